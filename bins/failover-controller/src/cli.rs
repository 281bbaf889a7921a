//! Command-line flags and the `--help` text that teaches the configuration.

use clap::Parser;
use std::path::PathBuf;

const ABOUT: &str = "Multi-region failover controller: one per region, peers, no primary/DR names.";

const LONG_ABOUT: &str = "\
Multi-region failover controller: one per region, peers, no primary/DR names.

The active region holds a lease at a witness (S3 conditional PUT, a Kubernetes Lease, a lease file,
or the HTTP witness protocol) and renews it every renew interval; a standby takes over only
after the lease lapsed plus a skew margin AND a DNS quorum (2 of 3 resolvers) says the
active region is unreachable. When the witness is gone, the quorum alone may promote
(witness_loss: dns-quorum) or the controller pages instead (witness_loss: hold).

Configuration: a YAML/TOML file (--config) plus environment variables. Any key can be
set as FAILOVER__<KEY>__<SUBKEY> (e.g. FAILOVER__TIMINGS__LEASE_TTL=30s); the upstream
names REGION, PEER_REGION, DNS_WITNESSES (comma-separated resolver addresses) and QUORUM
(answers needed) work too, as do AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.

At start the timing lint rejects unsafe timings (exit 64 with every reason). Layers:
`none` (lease-only: holds the lease and reports its role, moves no traffic) or `kube`
(HTTPRoute backends for k8gb, Cilium global Services, CNPG, Strimzi MirrorMaker2, named
in the `kube:` section; needs a cluster config: in-pod service account or KUBECONFIG).
Modes semi-automatic and manual need `control:` (a bearer token): approvals and
promote/demote arrive on POST /v1/approvals/{plan_id} and /v1/commands/{promote,demote}
(`sre failover ...`). On SIGTERM/Ctrl-C it releases the lease if it holds it and exits 0.

Exit codes: 0 stopped cleanly, 1 runtime failure, 64 bad flags, config or timings,
69 no Kubernetes API server (layers: kube).";

const EXAMPLE: &str = "\
Example (config.yaml):
  region: eu
  peer_region: us                 # or regions: [eu, us] (promotion order)
  resolvers: 8.8.8.8,1.1.1.1,9.9.9.9
  health: {zone: gslb.example.com} # asks <region>.health.gslb.example.com
  timings: {renew_interval: 10s, lease_ttl: 30s, skew_margin: 5s}
  witness: {kind: s3, bucket: failover-witness, key: failover/lease.json}
  layers: kube
  kube:
    namespace: shop
    routes: {names: [storefront], serving_backend: storefront, withdrawn_backend: storefront-withdrawn}
    mesh: {services: [orders]}
    cnpg: {cluster: pg-eu, peer_name: pg-us}
  mode: semi-automatic
  control: {token_file: /run/secrets/control-token, approval_ttl: 10m}
  listen: 0.0.0.0:9090

  failover-controller --config config.yaml --check-config   # validate, print, exit
  AWS_SECRET_ACCESS_KEY=... failover-controller --config config.yaml";

/// Command-line flags; everything else is configuration.
#[derive(Debug, Parser)]
#[command(name = "failover-controller", version, about = ABOUT, long_about = LONG_ABOUT, after_long_help = EXAMPLE)]
pub struct Args {
    /// Config file (.yaml, .yml or .toml). Without it, configuration comes from the
    /// environment only.
    #[arg(short, long, env = "FAILOVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Validate the config and the timings, print the effective config (secrets
    /// redacted) as JSON, and exit (0 valid, 64 invalid).
    #[arg(long)]
    pub check_config: bool,
}
