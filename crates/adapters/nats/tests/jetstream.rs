//! The consumer-replica executor against a real three-node JetStream cluster of
//! `nats-server` processes on loopback, started here (configuration files in a temp dir)
//! and killed on drop: replicas grow by one and read back, a dry run writes nothing, the
//! rule's and the stream's bounds hold, and unknown consumers are typed errors.

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use sre_adapter_nats::{JetStream, NatsClient, NatsConfig, NatsConsumers, NatsError};
use sre_core::PortError;
use sre_remediation::actions::{ConsumerRef, JetStreamConsumers, Mode};

/// Three `nats-server` children, killed (and reaped) on drop.
struct Cluster {
    children: Vec<Child>,
    client_ports: Vec<u16>,
    dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
    }
}

impl Cluster {
    fn config(&self, node: usize) -> NatsConfig {
        let mut c = NatsConfig::new(format!("nats://127.0.0.1:{}", self.client_ports[node]));
        c.timeout = Duration::from_secs(5);
        c
    }

    fn logs(&self) -> String {
        (1..=self.children.len())
            .map(|i| {
                let log = std::fs::read_to_string(self.dir.path().join(format!("n{i}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                format!(
                    "--- n{i} ---\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    // Hold every listener until all are picked, so that no two ports repeat.
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

fn start_cluster() -> Cluster {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(6);
    let (client_ports, route_ports) = (ports[..3].to_vec(), ports[3..].to_vec());
    let routes = route_ports
        .iter()
        .map(|p| format!("nats-route://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut cluster = Cluster {
        children: Vec::new(),
        client_ports: client_ports.clone(),
        dir,
    };
    for i in 0..3 {
        let name = format!("n{}", i + 1);
        let store = cluster.dir.path().join(format!("{name}-js"));
        let mut conf = String::new();
        let _ = write!(
            conf,
            "server_name: {name}\nlisten: 127.0.0.1:{}\n\
             jetstream {{\n  store_dir: {:?}\n  max_memory_store: 64MB\n  max_file_store: 256MB\n}}\n\
             cluster {{\n  name: sre-test\n  listen: 127.0.0.1:{}\n  routes: [{routes}]\n}}\n",
            client_ports[i],
            store.display().to_string(),
            route_ports[i],
        );
        let conf_path = cluster.dir.path().join(format!("{name}.conf"));
        std::fs::write(&conf_path, conf).expect("write config");
        let log = std::fs::File::create(cluster.dir.path().join(format!("{name}.log")))
            .expect("log file");
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("`nats-server` on PATH (cargo xtask services up installs it)");
        cluster.children.push(child);
    }
    cluster
}

/// A set-up step (stream or consumer create), retried until the cluster accepts it:
/// the meta leader must be elected and know its peers, and a new stream needs its own
/// RAFT leader before consumers can be added. Bounded: a cluster that never forms fails
/// the test with the servers' logs.
async fn when_ready(
    cluster: &Cluster,
    node: usize,
    stream: Option<&str>,
    config: &serde_json::Value,
) {
    let mut last = String::new();
    for _ in 0..60 {
        match JetStream::connect(&cluster.config(node)).await {
            Ok(mut js) => {
                let r = match stream {
                    None => js.create_stream(config).await.map(drop),
                    Some(s) => js.put_consumer(s, config).await.map(drop),
                };
                match r {
                    Ok(()) => return,
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "the JetStream cluster never accepted {config}: {last}\n{}",
        cluster.logs()
    );
}

/// The stream acknowledges a publish once its own RAFT group has it; the consumer's
/// leader counts it a moment later. Waits (bounded) until it has counted `want`, so that
/// the pending count the executor reports is the settled one.
async fn until_pending(js: &mut JetStream, stream: &str, consumer: &str, want: u64) {
    let mut seen = 0;
    for _ in 0..100 {
        seen = js
            .consumer_info(stream, consumer)
            .await
            .expect("info")
            .num_pending;
        if seen == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{stream}/{consumer} never counted {want} pending messages (last: {seen})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_replicas_grow_within_both_bounds_on_a_real_cluster() {
    let cluster = start_cluster();
    when_ready(
        &cluster,
        0,
        None,
        &json!({"name": "ORDERS", "subjects": ["orders.>"], "num_replicas": 3, "storage": "file"}),
    )
    .await;
    when_ready(
        &cluster,
        1,
        Some("ORDERS"),
        &json!({"durable_name": "billing", "ack_policy": "explicit", "num_replicas": 1}),
    )
    .await;
    // Talk to another node than the one that created the stream: JetStream routes the API.
    let mut js = JetStream::connect(&cluster.config(1))
        .await
        .expect("connect");
    assert!(
        js.client().server_info().jetstream,
        "{:?}",
        js.client().server_info()
    );
    let created = js
        .consumer_info("ORDERS", "billing")
        .await
        .expect("consumer");
    assert_eq!((created.num_replicas, created.num_pending), (1, 0));
    for i in 0..5 {
        let seq = js
            .publish("orders.new", format!("order {i}").as_bytes())
            .await
            .expect("publish");
        assert_eq!(seq, i + 1);
    }
    until_pending(&mut js, "ORDERS", "billing", 5).await;
    let port = NatsConsumers::new(cluster.config(2));
    let billing = ConsumerRef::new("ORDERS", "billing");

    let dry = port
        .add_replica(&billing, 5, Mode::DryRun)
        .await
        .expect("dry run");
    assert!(dry.changed && dry.dry_run, "{dry:?}");
    assert!(dry.detail.contains("num_pending=5"), "{}", dry.detail);
    let info = js.consumer_info("ORDERS", "billing").await.expect("info");
    assert_eq!(info.num_replicas, 1, "a dry run writes nothing");
    assert_eq!(info.num_pending, 5);

    let added = port
        .add_replica(&billing, 5, Mode::Apply)
        .await
        .expect("add a replica");
    assert!(added.changed && !added.dry_run, "{added:?}");
    assert_eq!(
        (added.before.as_deref(), added.after.as_deref()),
        (Some("replicas=1"), Some("replicas=2"))
    );
    let info = js.consumer_info("ORDERS", "billing").await.expect("info");
    assert_eq!(info.num_replicas, 2, "read back: {info:?}");
    assert_eq!(
        info.config["ack_policy"], "explicit",
        "the rest of the config is kept"
    );

    let at_max = port
        .add_replica(&billing, 2, Mode::Apply)
        .await
        .expect("at max");
    assert!(!at_max.changed, "{at_max:?}");
    assert!(
        at_max.detail.contains("max_replicas 2"),
        "{}",
        at_max.detail
    );

    // The stream's replicas bound the consumer's.
    when_ready(
        &cluster,
        0,
        None,
        &json!({"name": "AUDIT", "subjects": ["audit.>"], "num_replicas": 1}),
    )
    .await;
    when_ready(
        &cluster,
        0,
        Some("AUDIT"),
        &json!({"durable_name": "reader", "ack_policy": "explicit"}),
    )
    .await;
    let bounded = port
        .add_replica(&ConsumerRef::new("AUDIT", "reader"), 5, Mode::Apply)
        .await
        .expect("bounded by the stream");
    assert!(!bounded.changed, "{bounded:?}");
    assert!(
        bounded.detail.contains("stream AUDIT only 1"),
        "{}",
        bounded.detail
    );

    refusals_are_typed(&port).await;
    drop(cluster);
}

/// Unknown consumers and streams, bad names and a dead server: each its own error.
async fn refusals_are_typed(port: &NatsConsumers) {
    // Unknown consumer and stream: typed.
    let missing = port
        .add_replica_typed(&ConsumerRef::new("ORDERS", "nobody"), 3, Mode::Apply)
        .await;
    assert!(
        matches!(&missing, Err(e @ NatsError::Api { err_code: 10014, .. }) if e.is_not_found()),
        "{missing:?}"
    );
    assert!(matches!(
        port.add_replica(&ConsumerRef::new("NOPE", "c"), 3, Mode::Apply)
            .await,
        Err(PortError::NotFound { .. })
    ));
    // A name that would leave its subject token is refused before anything is sent.
    assert!(matches!(
        port.add_replica(&ConsumerRef::new("ORDERS", "a.b"), 3, Mode::Apply)
            .await,
        Err(PortError::Invalid(_))
    ));

    // Nobody listening: unavailable, retryable.
    let gone =
        NatsClient::connect(&NatsConfig::new(format!("127.0.0.1:{}", free_ports(1)[0]))).await;
    assert!(matches!(&gone, Err(NatsError::Io { .. })), "{gone:?}");
}
