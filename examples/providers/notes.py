#!/usr/bin/env python3
"""notes: an EXAMPLE external provider for Fediversity.

It keeps each DNS record set as a note, a small text file under $NOTES_DIR (default: a
directory in the system's temporary directory), one file per operator and resource address.
It shows how a provider speaks the JSON-lines protocol (docs/provider-protocol.md): a hello,
then one request per line on standard input and one answer per line on standard output, logs
on standard error. It is not meant for production: a real DNS provider would call a DNS API
where this writes a file.

Standard library only. Test it with: fediversity provider test examples/providers/notes.py
"""

import json
import os
import re
import secrets
import sys
import tempfile

PROTOCOL = 1
NAME = "notes"
RECORD_TYPES = ("A", "AAAA", "CNAME", "TXT", "MX", "SRV")
REPLACE_ON = ["zone", "name", "type"]
EXAMPLE = {
    "kind": "dns",
    "create": {"zone": "example.org", "name": "social.example.org", "type": "A", "ttl": 300,
               "values": ["192.0.2.10"]},
    "update": {"zone": "example.org", "name": "social.example.org", "type": "A", "ttl": 600,
               "values": ["192.0.2.10", "192.0.2.11"]},
    "invalid": {"zone": "example.org", "name": "elsewhere.example.net", "type": "A", "ttl": 300,
                "values": ["192.0.2.10"]},
}
SAFE = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


class Failure(Exception):
    """A request that fails: kind is "transient" (try again) or "permanent" (do not)."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


def log(message):
    # Standard error is the provider's log: the platform forwards each line to its own logs.
    print(message, file=sys.stderr, flush=True)


def send(message):
    print(json.dumps(message, separators=(",", ":")), flush=True)


def root():
    return os.environ.get("NOTES_DIR") or os.path.join(
        tempfile.gettempdir(), "fediversity-notes-%d" % os.getuid())


def note_path(params):
    """Where the note of this resource lives: found from the operator and the address alone,
    so that a read without recorded outputs (after the platform crashed) finds it."""
    operator, address = params.get("operator", ""), params.get("address", "")
    if not SAFE.match(operator) or not SAFE.match(address):
        raise Failure("permanent", "operator or address is not a safe file name")
    return os.path.join(root(), operator, address + ".note")


def check(inputs):
    """The inputs as a record set, or a permanent failure saying what is wrong."""
    if not isinstance(inputs, dict):
        raise Failure("permanent", "inputs must be an object")
    unknown = set(inputs) - {"zone", "name", "type", "ttl", "values"}
    if unknown:
        raise Failure("permanent", "unknown inputs: %s" % ", ".join(sorted(unknown)))
    zone, name = inputs.get("zone"), inputs.get("name")
    if not isinstance(zone, str) or not SAFE.match(zone):
        raise Failure("permanent", "`zone` must be a lower-case domain name")
    if not isinstance(name, str) or not (name == zone or name.endswith("." + zone)):
        raise Failure("permanent", "`name` must be in the zone %s" % zone)
    if inputs.get("type") not in RECORD_TYPES:
        raise Failure("permanent", "`type` must be one of %s" % ", ".join(RECORD_TYPES))
    ttl = inputs.get("ttl")
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= 2**31 - 1:
        raise Failure("permanent", "`ttl` must be a whole number of seconds")
    values = inputs.get("values")
    if not isinstance(values, list) or not values or not all(
            isinstance(v, str) and v and "\n" not in v for v in values):
        raise Failure("permanent", "`values` must be a non-empty list of one-line strings")
    return inputs


def load(path):
    """The note at path as (inputs, token), or None when there is none."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        return None
    fields, values = {}, []
    for line in lines:
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, value = (part.strip() for part in line.split(":", 1))
        if key == "value":
            values.append(value)
        else:
            fields[key] = value
    try:
        ttl = int(fields.get("ttl", ""))
    except ValueError:
        raise Failure("permanent", "the note %s has no valid ttl: fix or remove it" % path)
    inputs = {"zone": fields.get("zone"), "name": fields.get("name"),
              "type": fields.get("type"), "ttl": ttl, "values": values}
    return inputs, fields.get("token", "")


def store(path, params, inputs, token):
    """Writes the note atomically: a temporary file, then a rename."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    text = ["# note kept by the example provider `notes` for %s of operator %s"
            % (params["address"], params["operator"]),
            "zone: %s" % inputs["zone"], "name: %s" % inputs["name"],
            "type: %s" % inputs["type"], "ttl: %d" % inputs["ttl"]]
    text += ["value: %s" % v for v in inputs["values"]]
    text.append("token: %s" % token)
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".note-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write("\n".join(text) + "\n")
        os.replace(temporary, path)
    except OSError as error:
        os.unlink(temporary)
        raise Failure("transient", "cannot write %s: %s" % (path, error.strerror))


def outputs(inputs, token):
    # `token` stands for a secret a real system would hand out (an API key): it is named in
    # `sensitive`, so the platform encrypts it and never shows it.
    return {"values": {"fqdn": inputs["name"], "token": token}, "sensitive": ["token"]}


def hello(params, progress):
    if params.get("protocol") != PROTOCOL:
        raise Failure("permanent", "this provider speaks protocol %d" % PROTOCOL)
    log("notes: keeping notes in %s" % root())
    return {"protocol": PROTOCOL, "name": NAME, "kinds": ["dns"],
            "replace_on": {"dns": REPLACE_ON}, "concurrency": 1, "diff": True,
            "test_hooks": True, "examples": [EXAMPLE]}


def create(params, progress):
    """Makes the note, or adopts the one an interrupted create made: create is idempotent."""
    inputs = check(params.get("inputs"))
    path = note_path(params)
    found = load(path)
    token = found[1] if found and found[1] else secrets.token_hex(16)
    progress("writing the note", 0.5)
    store(path, params, inputs, token)
    log("notes: wrote %s" % path)
    return outputs(inputs, token)


def read(params, progress):
    found = load(note_path(params))
    if found is None:
        return None
    inputs, token = found
    return {"inputs": inputs, "outputs": outputs(inputs, token)}


def delete(params, progress):
    # A note holds no data worth keeping, so retention does not matter here; a provider of
    # data would answer {"deletion": "kept", "note": "..."} for retention "keep".
    try:
        os.unlink(note_path(params))
    except FileNotFoundError:
        pass  # Deleting what is gone succeeds.
    return {"deletion": "removed"}


def diff(params, progress):
    recorded, desired = params.get("recorded") or {}, params.get("desired") or {}
    changes = []
    for key in sorted(set(recorded) | set(desired)):
        if recorded.get(key) != desired.get(key):
            changes.append({"path": key, "kind": "replace" if key in REPLACE_ON else "in_place"})
    return {"changes": changes}


METHODS = {"hello": hello, "create": create, "read": read, "update": create, "delete": delete,
           "diff": diff}


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            ident = request["id"]
        except (ValueError, KeyError, TypeError):
            log("error: a request that is not JSON with an id; ignored")
            continue
        params = request.get("params") or {}

        def progress(message, fraction=None):
            report = {"message": message}
            if fraction is not None:
                report["fraction"] = fraction
            send({"id": ident, "progress": report})

        try:
            handler = METHODS.get(request.get("method"))
            if handler is None:
                raise Failure("permanent", "unknown method %r" % request.get("method"))
            test = params.get("test") if isinstance(params, dict) else None
            if test:
                raise Failure(test.get("fail", "permanent"),
                              "failing as the conformance runner asked (test hook)")
            send({"id": ident, "result": handler(params, progress)})
        except Failure as failure:
            send({"id": ident, "error": {"kind": failure.kind, "message": failure.message}})
        except Exception as error:  # A bug here should not take the provider down.
            log("error: %s failed: %s" % (request.get("method"), type(error).__name__))
            send({"id": ident, "error": {"kind": "permanent",
                                         "message": "internal error in notes: %s" % type(error).__name__}})


if __name__ == "__main__":
    main()
