//! Entry points shared by the fuzz targets (`fuzz/`) and the corpus replay
//! test (`tests/fuzz_corpus.rs`), so that both drive exactly the same code.
//! Each must return normally for every input; a panic is the bug.

use std::sync::OnceLock;

use crate::dns::zone::{RegionAnswer, Transport, Zone};
use crate::host::{SiteHost, city_host, parse_host};
use crate::range_table::RangeTable;

/// Host-name parsing: arbitrary bytes as a `Host` header against two apexes;
/// whatever parses as a city must build back to the same host.
pub fn host_name(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for apex in ["cityboard.localhost", "Example.COM."] {
        if let Ok(SiteHost::City(slug)) = parse_host(text, apex) {
            let host = city_host(&slug, apex)
                .unwrap_or_else(|e| panic!("parsed {slug:?} but cannot build: {e}"));
            assert_eq!(parse_host(&host, apex).ok(), Some(SiteHost::City(slug)));
        }
    }
}

/// The DNS request path: arbitrary bytes as a UDP and as a TCP request to a
/// zone with answers; any response must itself parse as a DNS message.
pub fn dns_request(data: &[u8]) {
    let zone = fuzz_zone();
    for transport in [Transport::Udp, Transport::Tcp] {
        if let Some(response) = zone.respond(data, transport) {
            assert!(
                hickory_proto::op::Message::from_vec(&response).is_ok(),
                "unparseable response to {data:?}"
            );
            if transport == Transport::Udp {
                assert!(
                    response.len() <= crate::dns::zone::MAX_EDNS_UDP,
                    "oversized UDP answer"
                );
            }
        }
    }
}

/// The range-table decoder: arbitrary bytes. What decodes must encode back
/// to the same bytes (the format has one encoding per table) and answer
/// lookups, at the edges of its ranges too, without panicking.
pub fn range_table(data: &[u8]) {
    let Ok(table) = RangeTable::from_bytes(data) else {
        return;
    };
    assert_eq!(
        table.to_bytes(),
        data,
        "decoded table re-encodes differently"
    );
    for (first, last, city) in table.ranges().take(64) {
        assert!(first <= last, "range {first}-{last}");
        assert!(
            table.cities().iter().any(|c| c == city),
            "unknown city {city:?}"
        );
        for a in [first, last, last.wrapping_add(1), first.wrapping_sub(1)] {
            let _ = table.city(std::net::IpAddr::V4(a.into()));
        }
    }
}

fn fuzz_zone() -> &'static Zone {
    static ZONE: OnceLock<Zone> = OnceLock::new();
    ZONE.get_or_init(|| {
        let zone = Zone::new(
            "cityboard.localhost",
            &["us-east".into(), "big".into()],
            vec![[127, 0, 0, 1].into()],
        )
        .unwrap_or_else(|e| panic!("fuzz zone: {e}"));
        zone.set_answer(
            "us-east",
            RegionAnswer {
                addrs: vec![
                    [127, 0, 0, 2].into(),
                    "::2"
                        .parse()
                        .unwrap_or(std::net::Ipv6Addr::LOCALHOST)
                        .into(),
                ],
                ttl: 30,
            },
        );
        zone.set_answer(
            "big",
            RegionAnswer {
                addrs: (0..200u8).map(|i| [10, 0, 0, i].into()).collect(),
                ttl: 30,
            },
        );
        zone
    })
}
