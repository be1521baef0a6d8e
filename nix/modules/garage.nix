# A node of an operator's dedicated Garage cluster: NixOS's services.garage with the settings
# from ../lib/garage.nix, its RPC secret and admin token from the environment file made from
# secrets, and Caddy in front with TLS: a certificate for the S3 endpoint, and one per bucket
# website, obtained on demand once Garage confirms (`/check`) that the name is a bucket's.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  fedi = import ../lib;
  inherit (config.fediversity) spec;
  m = fedi.services.garage spec;
  local = port: "127.0.0.1:${toString port}";
in
{
  config = lib.mkIf (spec.service == "garage") {
    services.garage = {
      enable = true;
      package = lib.mkDefault pkgs.garage_2;
      environmentFile = fedi.envFilePath "garage";
      inherit (m) settings;
    };

    services.caddy = {
      enable = true;
      globalConfig = ''
        on_demand_tls {
          ask http://${local m.listen.admin}/check
        }
      '';
      virtualHosts.${spec.fqdn}.extraConfig = ''
        reverse_proxy ${local m.listen.s3}
      '';
      virtualHosts."*.${m.webRootDomain}".extraConfig = ''
        tls {
          on_demand
        }
        reverse_proxy ${local m.listen.web}
      '';
    };

    fediversity.secretConsumers = [ "garage" ];
  };
}
