# A dedicated Garage node's settings for one host spec (services.garage.settings), the
# environment read from secret files at runtime and what the health check looks at. Pure, like
# ./mastodon.nix.
spec:
let
  s = import ./spec.nix;
  listen = {
    s3 = 3900;
    rpc = 3901;
    web = 3902;
    admin = 3903;
  };
  own =
    if spec.node < 1 || spec.node > builtins.length spec.peers then
      throw "fediversity host spec: garage node ${toString spec.node} is not among its ${toString (builtins.length spec.peers)} peers"
    else
      builtins.elemAt spec.peers (spec.node - 1);
in
{
  service = "garage";
  hostName = s.hostName spec;
  inherit (spec) fqdn;
  inherit listen;
  webRootDomain = spec.web_root_domain;

  settings = {
    inherit (spec) replication_factor;
    db_engine = "lmdb";
    rpc_bind_addr = "[::]:${toString listen.rpc}";
    rpc_public_addr = "${own}:${toString listen.rpc}";
    s3_api = {
      s3_region = spec.region;
      api_bind_addr = "127.0.0.1:${toString listen.s3}";
      root_domain = ".${spec.fqdn}";
    };
    s3_web = {
      bind_addr = "127.0.0.1:${toString listen.web}";
      root_domain = ".${spec.web_root_domain}";
      index = "index.html";
    };
    # The deployer reaches the admin API on the first node to create buckets and keys.
    admin.api_bind_addr = "[::]:${toString listen.admin}";
  };

  # The other nodes, which the cluster step connects by node id (Garage's bootstrap_peers
  # needs ids, which exist only once each node has started).
  peers = builtins.filter (p: p != own) spec.peers;

  env = { };

  # Garage reads these variables in place of rpc_secret and admin_token.
  secretEnv = {
    GARAGE_RPC_SECRET = s.fromSecret "garage-rpc-secret";
    GARAGE_ADMIN_TOKEN = s.fromSecret "garage-admin-token";
  };

  secretFileOptions = { };

  admin = null;

  health = {
    units = [
      "garage.service"
      "caddy.service"
    ];
    http = [
      {
        # 503 means up but without a cluster layout yet, which the cluster step applies after
        # every node is deployed.
        name = "garage-admin";
        url = "http://127.0.0.1:${toString listen.admin}/health";
        expect_status = [
          200
          503
        ];
      }
    ];
  };

  ports = s.webPorts ++ [
    listen.rpc
    listen.admin
  ];
}
