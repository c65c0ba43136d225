//! The origin-zone DNS seen through a real resolver (hickory), with health
//! checks against small HTTP servers started here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use geo_router::dns::health::{Checker, HealthPolicy};
use geo_router::dns::server::{Sockets, serve};
use geo_router::dns::{DnsConfig, Instance, Zone};
use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ZONE: &str = "geo.test";

/// An HTTP server answering `/healthz` with 200 or 503 depending on a switch.
async fn health_server() -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
    let addr = listener.local_addr().expect("addr");
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = healthy.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let ok = flag.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let status = if ok {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = stream
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (addr, healthy)
}

/// Starts the zone, its checker (fast policy) and the server; returns the DNS address.
async fn start(config: DnsConfig) -> (SocketAddr, Arc<Zone>) {
    let zone = Arc::new(Zone::new(&config.zone, &config.regions, vec![]).expect("zone"));
    let policy = HealthPolicy {
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(300),
        fall: 2,
        rise: 2,
        ttl: 30,
        fallback_ttl: 5,
    };
    tokio::spawn(Checker::new(zone.clone(), &config, policy).run());
    let sockets = Sockets::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind dns");
    let addr = sockets.local_addr().expect("addr");
    tokio::spawn(serve(zone.clone(), sockets));
    (addr, zone)
}

/// A fresh resolver (no cache carried between lookups) talking UDP then TCP to `dns`.
fn resolver(dns: SocketAddr) -> Resolver<TokioRuntimeProvider> {
    let mut udp = ConnectionConfig::udp();
    udp.port = dns.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = dns.port();
    let server = NameServerConfig::new(dns.ip(), true, vec![udp, tcp]);
    let mut builder = Resolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![server]),
        TokioRuntimeProvider::default(),
    );
    builder.options_mut().cache_size = 0;
    builder.options_mut().timeout = Duration::from_secs(2);
    builder.build().expect("resolver")
}

async fn a_records(dns: SocketAddr, name: &str) -> Vec<IpAddr> {
    let lookup = resolver(dns)
        .lookup(name, RecordType::A)
        .await
        .expect("lookup");
    let mut ips: Vec<IpAddr> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            hickory_resolver::proto::rr::RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn config(instances: Vec<Instance>) -> DnsConfig {
    DnsConfig {
        zone: ZONE.into(),
        ..DnsConfig::default()
    }
    .with_instances(instances)
}

/// Polls until the region's A records equal `want` (health changes take a few rounds).
async fn wait_for(dns: SocketAddr, name: &str, want: &[IpAddr]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = a_records(dns, name).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: wanted {want:?}, still {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn origin_names_answer_healthy_instances_and_follow_health_checks() {
    let (http1, healthy1) = health_server().await;
    let (http2, _healthy2) = health_server().await;
    let (dns, _zone) = start(config(vec![
        Instance {
            region: "us-east".into(),
            check: http1,
            answer: ip(11),
        },
        Instance {
            region: "us-east".into(),
            check: http2,
            answer: ip(12),
        },
    ]))
    .await;
    let name = "origin.us-east.geo.test.";
    wait_for(dns, name, &[ip(11), ip(12)]).await;

    healthy1.store(false, Ordering::SeqCst);
    wait_for(dns, name, &[ip(12)]).await;

    healthy1.store(true, Ordering::SeqCst);
    wait_for(dns, name, &[ip(11), ip(12)]).await;
}

#[tokio::test]
async fn no_healthy_instance_answers_the_last_known_set_or_the_standby() {
    let (http1, healthy1) = health_server().await;
    let (http2, healthy2) = health_server().await;
    let mut cfg = config(vec![
        Instance {
            region: "a".into(),
            check: http1,
            answer: ip(21),
        },
        Instance {
            region: "b".into(),
            check: http2,
            answer: ip(22),
        },
    ]);
    cfg.standby.insert("b".into(), vec![ip(99)]);
    let (dns, zone) = start(cfg).await;
    healthy1.store(false, Ordering::SeqCst);
    healthy2.store(false, Ordering::SeqCst);
    wait_for(dns, "origin.b.geo.test.", &[ip(99)]).await;
    // Region a has no standby: the last known set, with the short TTL.
    let deadline = Instant::now() + Duration::from_secs(5);
    while zone.answer_of("a").map(|a| a.ttl) != Some(5) {
        assert!(Instant::now() < deadline, "fallback TTL never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a_records(dns, "origin.a.geo.test.").await, [ip(21)]);
}

#[tokio::test]
async fn unknown_names_are_nxdomain() {
    let (http, _) = health_server().await;
    let (dns, _) = start(config(vec![Instance {
        region: "us-east".into(),
        check: http,
        answer: ip(1),
    }]))
    .await;
    for name in [
        "nothing.geo.test.",
        "origin.mars.geo.test.",
        "x.origin.us-east.geo.test.",
    ] {
        let err = resolver(dns)
            .lookup(name, RecordType::A)
            .await
            .expect_err(name);
        assert!(err.is_nx_domain(), "{name}: {err}");
    }
    // The apex has SOA and NS.
    let soa = resolver(dns)
        .lookup("geo.test.", RecordType::SOA)
        .await
        .expect("soa");
    assert_eq!(soa.answers().len(), 1);
    let ns = resolver(dns)
        .lookup("geo.test.", RecordType::NS)
        .await
        .expect("ns");
    assert_eq!(ns.answers().len(), 1);
}

#[tokio::test]
async fn large_answers_fall_back_to_tcp() {
    let (http, _) = health_server().await;
    // 100 instances (all checked on one server): far over 512 bytes of A records.
    let instances: Vec<Instance> = (0..100u8)
        .map(|i| Instance {
            region: "big".into(),
            check: http,
            answer: IpAddr::V4(Ipv4Addr::new(10, 0, 1, i)),
        })
        .collect();
    let (dns, _) = start(config(instances)).await;
    let got = a_records(dns, "origin.big.geo.test.").await;
    assert_eq!(
        got.len(),
        100,
        "the resolver retried over TCP after a truncated UDP answer"
    );

    // And the UDP answer really is truncated.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    let mut query = hickory_resolver::proto::op::Message::query();
    query.add_query(hickory_resolver::proto::op::Query::query(
        hickory_resolver::proto::rr::Name::from_ascii("origin.big.geo.test.").expect("name"),
        RecordType::A,
    ));
    socket
        .send_to(&query.to_vec().expect("encode"), dns)
        .await
        .expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
        .await
        .expect("answer in time")
        .expect("recv");
    let answer = hickory_resolver::proto::op::Message::from_vec(&buf[..n]).expect("decodes");
    assert!(answer.metadata.truncation);
    assert!(n <= 512);
}
