//! Configuration files for the test servers, as pure functions of ports and
//! paths so that they can be checked without starting anything.

use std::fmt::Write as _;
use std::path::Path;

/// Name of the always-firing alert: remediation tests wait for it to reach the webhook.
pub const ALWAYS_FIRING_ALERT: &str = "SreTestAlwaysFiring";

/// The fixed DNS data the resolver contract tests depend on (`local-data` lines).
/// Everything else under `sre.test.` is NXDOMAIN; region-a AAAA is NODATA.
pub const DNS_RECORDS: &[&str] = &[
    "region-a.health.sre.test. A 192.0.2.1",
    "region-b.health.sre.test. A 192.0.2.2",
    "dual.sre.test. A 192.0.2.3",
    "dual.sre.test. AAAA 2001:db8::3",
];

/// The data of the *lying* resolver: it claims region-b's health name is gone
/// (NXDOMAIN) while the honest ones answer it, so quorum tests can show that one liar
/// can neither make nor block a 2-of-3 decision on its own.
pub const LIAR_DNS_RECORDS: &[&str] = &["region-a.health.sre.test. A 192.0.2.1"];

/// unbound as a self-contained, foreground, loopback-only resolver that serves
/// `sre.test.` from a static local zone (`records`: [`DNS_RECORDS`] for the honest
/// ones, [`LIAR_DNS_RECORDS`] for the liar) and never touches system paths.
pub fn unbound_conf_with(dir: &Path, port: u16, records: &[&str]) -> String {
    let dir = dir.display();
    let mut conf = format!(
        r#"# written by cargo xtask services up
server:
    interface: 127.0.0.1@{port}
    port: {port}
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    so-reuseport: no
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    local-zone: "sre.test." static
"#
    );
    for record in records {
        let _ = writeln!(conf, "    local-data: \"{record}\"");
    }
    conf.push_str("remote-control:\n    control-enable: no\n");
    conf
}

/// Alertmanager routing every alert to the test webhook quickly (`group_wait: 1s`),
/// so that "alert firing -> action" can be measured in seconds. A short
/// `repeat_interval` re-delivers firing groups every few seconds, so that a test run
/// against long-running services still receives the always-firing alert (and sees
/// Alertmanager's at-least-once repeats, which the webhook must deduplicate). The
/// webhook requires a bearer token, as in production: Alertmanager 0.25 sends it from
/// the receiver's `http_config.authorization` (random per run, hex: no quoting needed).
pub fn alertmanager_yml(webhook_port: u16, webhook_token: &str) -> String {
    format!(
        r"# written by cargo xtask services up
route:
  receiver: sre-test-webhook
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 5s
receivers:
  - name: sre-test-webhook
    webhook_configs:
      - url: http://127.0.0.1:{webhook_port}/webhook/alertmanager
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {webhook_token}
"
    )
}

/// Prometheus scraping itself, evaluating rules every second and sending
/// alerts to our Alertmanager.
pub fn prometheus_yml(port: u16, alertmanager_port: u16, rules: &Path) -> String {
    format!(
        r"# written by cargo xtask services up
global:
  scrape_interval: 5s
  evaluation_interval: 1s
rule_files:
  - {rules}
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:{alertmanager_port}']
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:{port}']
",
        rules = rules.display()
    )
}

/// One alert that always fires, so the alerting path can be tested end to end.
pub fn prometheus_rules() -> String {
    format!(
        r"# written by cargo xtask services up
groups:
  - name: sre-test
    rules:
      - alert: {ALWAYS_FIRING_ALERT}
        expr: vector(1)
        for: 0s
        labels:
          severity: test
        annotations:
          summary: always firing, for sre tests
"
    )
}

/// distribution (docker-registry) serving plain HTTP on loopback with storage
/// in the run's directory.
pub fn registry_yml(port: u16, storage: &Path) -> String {
    format!(
        r"# written by cargo xtask services up
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
",
        storage = storage.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbound_conf_is_self_contained() {
        let conf = unbound_conf_with(Path::new("/tmp/d"), 5353, DNS_RECORDS);
        for needle in [
            "interface: 127.0.0.1@5353",
            "do-daemonize: no",
            "username: \"\"",
            "chroot: \"\"",
            "module-config: \"iterator\"",
            "access-control: 127.0.0.0/8 allow",
            "local-zone: \"sre.test.\" static",
            "local-data: \"dual.sre.test. AAAA 2001:db8::3\"",
            "control-enable: no",
            "pidfile: \"/tmp/d/unbound.pid\"",
        ] {
            assert!(conf.contains(needle), "missing {needle:?} in\n{conf}");
        }
        // No trust anchors: a DNSSEC validator would need the network.
        assert!(!conf.contains("trust-anchor"));
        assert!(!conf.contains("validator"));
    }

    #[test]
    fn alerting_configs_point_at_each_other() {
        let am = alertmanager_yml(4000, "0a1b2c");
        assert!(am.contains("url: http://127.0.0.1:4000/webhook/alertmanager\n"));
        assert!(
            am.contains(
                "        http_config:\n          authorization:\n            type: Bearer\n            credentials: 0a1b2c\n"
            ),
            "{am}"
        );
        assert!(am.contains("group_wait: 1s"));
        assert!(am.contains("repeat_interval: 5s"));
        let prom = prometheus_yml(9000, 9100, Path::new("/r/rules.yml"));
        assert!(prom.contains("targets: ['127.0.0.1:9100']"));
        assert!(prom.contains("targets: ['127.0.0.1:9000']"));
        assert!(prom.contains("- /r/rules.yml"));
        assert!(prometheus_rules().contains("alert: SreTestAlwaysFiring"));
    }

    #[test]
    fn registry_listens_on_loopback_only() {
        let yml = registry_yml(5000, Path::new("/s"));
        assert!(yml.contains("addr: 127.0.0.1:5000"));
        assert!(yml.contains("rootdirectory: /s"));
    }
}
