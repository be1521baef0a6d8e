//! A throwaway OpenLDAP server for the `identity` provider's integration tests, started from
//! Debian's `slapd` (with `ldap-utils` for the changes tests make), which `scripts/setup-test`
//! installs.
//!
//! Each [`Slapd`] has its own temporary directory holding a `cn=config` made with `slapadd`
//! (never the system's `/etc/ldap/slapd.d`), an MDB database, and TLS material made at start:
//! a CA and a server certificate for the name `localhost` only, so a client that trusts
//! [`Slapd::ca_pem`] and connects to `localhost` gets a verified connection, while one that
//! connects to `127.0.0.1` meets a certificate for another name. The server listens on two
//! free loopback ports: `ldap://` (for StartTLS) and `ldaps://`.
//!
//! The directory under [`SUFFIX`] holds people (`alice`, `bob`, `carol`), a group `admins`
//! (`groupOfNames`) whose only member is `alice`, and the service account [`BIND_DN`] with
//! [`BIND_PASSWORD`]. [`Slapd::add_user`], [`Slapd::remove_user`], [`Slapd::add_admin`] and
//! [`Slapd::remove_admin`] change it as a directory administrator would, over the plain
//! loopback port with `ldapmodify` bound as the database's root DN.
//!
//! Stopping: like [`crate::pdns`], a small supervising shell holds the server and waits on a
//! pipe from this process; dropping the [`Slapd`], or this process ending in any way, closes
//! the pipe and the shell stops the server and removes its directory.

#![allow(
    clippy::panic,
    clippy::expect_used,
    reason = "test support: a server that cannot start is a failed test"
)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tempfile::TempDir;

use crate::postgres::run_checked;

/// The directory's suffix.
pub const SUFFIX: &str = "dc=example,dc=org";
/// Where people live.
pub const PEOPLE: &str = "ou=people,dc=example,dc=org";
/// Where groups live.
pub const GROUPS: &str = "ou=groups,dc=example,dc=org";
/// The group whose members are administrators.
pub const ADMIN_GROUP: &str = "cn=admins,ou=groups,dc=example,dc=org";
/// The service account the platform binds as.
pub const BIND_DN: &str = "cn=fediversity,ou=services,dc=example,dc=org";
/// The service account's password.
pub const BIND_PASSWORD: &str = "poison-bind-password-7f3a";
/// The database's root DN, which the helpers bind as to change the directory.
const ROOT_DN: &str = "cn=root,dc=example,dc=org";
const ROOT_PASSWORD: &str = "root-password-for-tests";

/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running slapd, stopped and deleted when dropped.
#[derive(Debug)]
pub struct Slapd {
    ldap_port: u16,
    ldaps_port: u16,
    ca_pem: String,
    dir: TempDir,
    supervisor_stdin: Mutex<Option<ChildStdin>>,
    supervisor: Mutex<Option<Child>>,
}

impl Slapd {
    /// Starts a server with the small directory described in the module documentation; blocks
    /// until it accepts connections.
    ///
    /// # Panics
    /// When slapd or ldap-utils are not installed or the server does not start, with what to
    /// do about it.
    pub fn start() -> Slapd {
        let slapd = find_program("slapd");
        let slapadd = find_program("slapadd");
        find_program("ldapmodify");
        let dir = tempfile::Builder::new()
            .prefix("fediversity-slapd-")
            .tempdir()
            .expect("cannot create a temporary directory for slapd");
        let ca_pem = write_tls_material(dir.path());
        let config = dir.path().join("slapd.d");
        let data = dir.path().join("data");
        for sub in [&config, &data] {
            std::fs::create_dir(sub).expect("cannot create slapd's directories");
        }
        let config_ldif = dir.path().join("config.ldif");
        std::fs::write(&config_ldif, config_ldif_text(dir.path()))
            .expect("cannot write config.ldif");
        slapadd_file(&slapadd, &config, "0", &config_ldif, "slapadd (cn=config)");
        let data_ldif = dir.path().join("directory.ldif");
        std::fs::write(&data_ldif, directory_ldif()).expect("cannot write directory.ldif");
        slapadd_file(&slapadd, &config, "1", &data_ldif, "slapadd (directory)");
        let (ldap_port, ldaps_port) = (free_port(), free_port());
        let listen = format!("ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/");
        let mut supervisor = supervise(&slapd, dir.path(), &config, &listen);
        let stdin = supervisor.stdin.take();
        let server = Slapd {
            ldap_port,
            ldaps_port,
            ca_pem,
            dir,
            supervisor_stdin: Mutex::new(stdin),
            supervisor: Mutex::new(Some(supervisor)),
        };
        server.wait_until_it_listens();
        server
    }

    /// `ldap://localhost:<port>`, for StartTLS.
    pub fn ldap_url(&self) -> String {
        format!("ldap://localhost:{}", self.ldap_port)
    }

    /// `ldaps://localhost:<port>`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://localhost:{}", self.ldaps_port)
    }

    /// `ldaps://127.0.0.1:<port>`: the right server under a name its certificate lacks.
    pub fn ldaps_url_by_address(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    /// The PEM certificate of the CA that signed the server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Adds a person `uid=<uid>` under [`PEOPLE`] with the mail `<uid>@example.org`.
    pub fn add_user(&self, uid: &str) {
        self.modify(&format!(
            "dn: uid={uid},{PEOPLE}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: {uid}\n\
             cn: {uid}\nsn: {uid}\nmail: {uid}@example.org\n"
        ));
    }

    /// Removes the person `uid=<uid>` (and leaves group memberships as a careless
    /// administrator would: `member` values are not checked by slapd).
    pub fn remove_user(&self, uid: &str) {
        self.modify(&format!("dn: uid={uid},{PEOPLE}\nchangetype: delete\n"));
    }

    /// Makes `uid=<uid>` a member of [`ADMIN_GROUP`].
    pub fn add_admin(&self, uid: &str) {
        self.modify(&format!(
            "dn: {ADMIN_GROUP}\nchangetype: modify\nadd: member\nmember: uid={uid},{PEOPLE}\n"
        ));
    }

    /// Takes `uid=<uid>` out of [`ADMIN_GROUP`].
    pub fn remove_admin(&self, uid: &str) {
        self.modify(&format!(
            "dn: {ADMIN_GROUP}\nchangetype: modify\ndelete: member\nmember: uid={uid},{PEOPLE}\n"
        ));
    }

    /// Applies `ldif` with `ldapmodify`, bound as the root DN over the plain loopback port.
    pub fn modify(&self, ldif: &str) {
        let mut child = Command::new("ldapmodify")
            .args(["-x", "-H"])
            .arg(format!("ldap://127.0.0.1:{}", self.ldap_port))
            .args(["-D", ROOT_DN, "-w", ROOT_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ldapmodify: {e}"));
        child
            .stdin
            .take()
            .expect("ldapmodify has a standard input")
            .write_all(ldif.as_bytes())
            .expect("cannot write to ldapmodify");
        let output = child.wait_with_output().expect("ldapmodify did not finish");
        assert!(
            output.status.success(),
            "ldapmodify failed on\n{ldif}\n{}",
            crate::describe(&output)
        );
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    fn wait_until_it_listens(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            let up = [self.ldap_port, self.ldaps_port]
                .iter()
                .all(|port| TcpStream::connect(("127.0.0.1", *port)).is_ok());
            if up {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "slapd did not listen within {START_TIMEOUT:?}:\n{}",
            self.log()
        )
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Ok(mut stdin) = self.supervisor_stdin.lock() {
            stdin.take();
        }
        if let Ok(mut supervisor) = self.supervisor.lock()
            && let Some(mut child) = supervisor.take()
        {
            let _ = child.wait();
        }
    }
}

/// The program `name` on `PATH` or in `/usr/sbin`, or a failure naming the setup script.
fn find_program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: the identity provider's tests run a real OpenLDAP \
                 server; install it with scripts/setup-test (Debian's slapd and ldap-utils)"
            )
        })
}

/// A CA and a server certificate for `localhost` signed by it, written as `ca.pem`,
/// `server.pem` and `server.key`; returns the CA's PEM.
fn write_tls_material(dir: &Path) -> String {
    let fail = |e: rcgen::Error| -> ! { panic!("cannot make slapd's certificates: {e}") };
    let ca_key = KeyPair::generate().unwrap_or_else(|e| fail(e));
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| fail(e));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Fediversity test directory CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap_or_else(|e| fail(e));
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap_or_else(|e| fail(e));
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned()]).unwrap_or_else(|e| fail(e));
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).unwrap_or_else(|e| fail(e));
    for (name, text) in [
        ("ca.pem", ca_cert.pem()),
        ("server.pem", cert.pem()),
        ("server.key", key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), text).expect("cannot write slapd's TLS files");
    }
    ca_cert.pem()
}

fn config_ldif_text(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        "dn: cn=config\n\
         objectClass: olcGlobal\n\
         cn: config\n\
         olcPidFile: {dir}/slapd.pid\n\
         olcTLSCACertificateFile: {dir}/ca.pem\n\
         olcTLSCertificateFile: {dir}/server.pem\n\
         olcTLSCertificateKeyFile: {dir}/server.key\n\
         \n\
         dn: cn=module{{0}},cn=config\n\
         objectClass: olcModuleList\n\
         cn: module{{0}}\n\
         olcModulePath: /usr/lib/ldap\n\
         olcModuleLoad: back_mdb\n\
         \n\
         dn: cn=schema,cn=config\n\
         objectClass: olcSchemaConfig\n\
         cn: schema\n\
         \n\
         include: file:///etc/ldap/schema/core.ldif\n\
         \n\
         include: file:///etc/ldap/schema/cosine.ldif\n\
         \n\
         include: file:///etc/ldap/schema/inetorgperson.ldif\n\
         \n\
         dn: olcDatabase={{-1}}frontend,cn=config\n\
         objectClass: olcDatabaseConfig\n\
         objectClass: olcFrontendConfig\n\
         olcDatabase: {{-1}}frontend\n\
         \n\
         dn: olcDatabase={{0}}config,cn=config\n\
         objectClass: olcDatabaseConfig\n\
         olcDatabase: {{0}}config\n\
         olcAccess: {{0}}to * by * none\n\
         \n\
         dn: olcDatabase={{1}}mdb,cn=config\n\
         objectClass: olcDatabaseConfig\n\
         objectClass: olcMdbConfig\n\
         olcDatabase: {{1}}mdb\n\
         olcSuffix: {SUFFIX}\n\
         olcDbDirectory: {dir}/data\n\
         olcDbMaxSize: 16777216\n\
         olcRootDN: {ROOT_DN}\n\
         olcRootPW: {ROOT_PASSWORD}\n\
         olcAccess: {{0}}to attrs=userPassword by anonymous auth by * none\n\
         olcAccess: {{1}}to * by users read by * none\n"
    )
}

fn directory_ldif() -> String {
    let person = |uid: &str| {
        format!(
            "dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\n\
             sn: {uid}\nmail: {uid}@example.org\n\n"
        )
    };
    format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
         dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {BIND_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
         cn: fediversity\nuserPassword: {BIND_PASSWORD}\n\n\
         {}{}{}\
         dn: {ADMIN_GROUP}\nobjectClass: groupOfNames\ncn: admins\nmember: uid=alice,{PEOPLE}\n",
        person("alice"),
        person("bob"),
        person("carol"),
    )
}

fn slapadd_file(slapadd: &Path, config: &Path, database: &str, ldif: &Path, what: &str) {
    run_checked(
        Command::new(slapadd)
            .arg("-F")
            .arg(config)
            .args(["-n", database, "-l"])
            .arg(ldif),
        what,
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("cannot find a free TCP port on 127.0.0.1")
}

/// Spawns the shell that runs slapd in the foreground and, once its standard input closes,
/// stops it and removes `dir`.
fn supervise(slapd: &Path, dir: &Path, config: &Path, listen: &str) -> Child {
    const SCRIPT: &str = r#""$@" >"$DIR/slapd.log" 2>&1 & pid=$!
cat >/dev/null
kill "$pid" 2>/dev/null; wait "$pid"; rm -rf "$DIR""#;
    Command::new("sh")
        .args(["-c", SCRIPT, "supervisor"])
        .arg(slapd)
        .arg("-F")
        .arg(config)
        .args(["-h", listen, "-d", "0"])
        .env("DIR", dir)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start the shell that runs slapd")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(server: &Slapd, base: &str, filter: &str) -> String {
        let output = run_checked(
            Command::new("ldapsearch")
                .args(["-x", "-LLL", "-H"])
                .arg(format!("ldap://127.0.0.1:{}", server.ldap_port))
                .args(["-D", BIND_DN, "-w", BIND_PASSWORD, "-b", base, filter, "dn"]),
            "ldapsearch",
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    #[test]
    fn a_started_server_serves_its_directory_and_is_gone_when_dropped() {
        let server = Slapd::start();
        let people = search(&server, PEOPLE, "(objectClass=inetOrgPerson)");
        assert_eq!(people.matches("dn: uid=").count(), 3, "{people}");
        server.add_user("dave");
        server.remove_user("bob");
        let people = search(&server, PEOPLE, "(objectClass=inetOrgPerson)");
        assert!(
            people.contains("uid=dave") && !people.contains("uid=bob"),
            "{people}"
        );
        let dir = server.dir.path().to_owned();
        let port = server.ldap_port;
        drop(server);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }
}
