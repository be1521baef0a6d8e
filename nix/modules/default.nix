# Every Fediversity module: the host spec decides which service is switched on.
{
  imports = [
    ./common.nix
    ./mastodon.nix
    ./pixelfed.nix
    ./peertube.nix
    ./garage.nix
  ];
}
