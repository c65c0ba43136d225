//! Answering one DNS request for the origin zone.
//!
//! The zone holds, per region, the addresses to hand out and their TTL; the
//! health checker replaces them, the server asks [`Zone::respond`]. Names:
//!
//! | name                        | answer                                     |
//! |-----------------------------|--------------------------------------------|
//! | `{zone}`                    | SOA, NS (`ns.{zone}`)                      |
//! | `ns.{zone}`                 | A/AAAA of the server when configured       |
//! | `origin.{region}.{zone}`    | A/AAAA of the region's answer set          |
//! | `{region}.{zone}`           | exists, no data (empty non-terminal)       |
//! | anything else in the zone   | NXDOMAIN with the SOA                      |
//! | outside the zone            | REFUSED (we are not a resolver)            |
//!
//! A UDP answer larger than the client's limit (512 bytes, or its EDNS size
//! up to 1232) is sent empty with the TC bit, and the client retries over TCP.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::RwLock;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::error::{GeoError, Result};

/// Largest UDP answer we send with EDNS (the DNS flag day 2020 value, which
/// avoids IP fragmentation).
pub const MAX_EDNS_UDP: usize = 1232;
/// Classic UDP limit without EDNS.
pub const MIN_UDP: usize = 512;
/// TTL of the SOA, NS and negative answers.
const ZONE_TTL: u32 = 60;

/// How a request arrived; decides truncation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: answers over the client's size limit are truncated.
    Udp,
    /// TCP: no size limit short of 65535.
    Tcp,
}

/// The addresses currently answered for one region.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegionAnswer {
    /// Addresses, IPv4 and IPv6 mixed (A and AAAA are filtered from it).
    pub addrs: Vec<IpAddr>,
    /// TTL in seconds: normal when healthy, short for a fallback set.
    pub ttl: u32,
}

/// The origin zone and its current answers.
#[derive(Debug)]
pub struct Zone {
    apex: Name,
    ns_name: Name,
    ns_addrs: Vec<IpAddr>,
    serial: u32,
    /// Keyed by lower-case region label.
    regions: RwLock<BTreeMap<String, RegionAnswer>>,
}

impl Zone {
    /// A zone for `apex` (e.g. `cityboard.localhost`) with the given regions,
    /// each starting with an empty answer. `ns_addrs` are the server's own
    /// addresses for `ns.{apex}` glue (may be empty).
    pub fn new(apex: &str, regions: &[String], ns_addrs: Vec<IpAddr>) -> Result<Self> {
        let apex = Name::from_ascii(apex)
            .map_err(|e| GeoError::Dns(format!("zone {apex:?}: {e}")))?
            .to_lowercase();
        let mut apex = apex;
        apex.set_fqdn(true);
        let ns_name = Name::from_ascii("ns")
            .and_then(|n| n.append_name(&apex))
            .map_err(|e| GeoError::Dns(format!("ns name: {e}")))?;
        let mut map = BTreeMap::new();
        for region in regions {
            map.insert(region.to_ascii_lowercase(), RegionAnswer::default());
        }
        let serial = u32::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1),
        )
        .unwrap_or(1);
        Ok(Zone {
            apex,
            ns_name,
            ns_addrs,
            serial,
            regions: RwLock::new(map),
        })
    }

    /// Replaces a region's answer (called by the health checker).
    pub fn set_answer(&self, region: &str, answer: RegionAnswer) {
        let mut regions = self
            .regions
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        regions.insert(region.to_ascii_lowercase(), answer);
    }

    /// A region's current answer.
    pub fn answer_of(&self, region: &str) -> Option<RegionAnswer> {
        let regions = self
            .regions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        regions.get(&region.to_ascii_lowercase()).cloned()
    }

    /// Answers one request. `None` means "send nothing": the bytes were not a
    /// query we can even address an error to (too short, or a response).
    pub fn respond(&self, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let message = match Message::from_vec(request) {
            Ok(m) => m,
            Err(_) => return format_error(request),
        };
        if message.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut response = Message::response(message.metadata.id, message.metadata.op_code);
        response.metadata.recursion_desired = message.metadata.recursion_desired;
        response.metadata.authoritative = true;
        let limit = match (transport, &message.edns) {
            (Transport::Tcp, _) => usize::from(u16::MAX),
            (Transport::Udp, Some(edns)) => {
                usize::from(edns.max_payload()).clamp(MIN_UDP, MAX_EDNS_UDP)
            }
            (Transport::Udp, None) => MIN_UDP,
        };
        if message.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(MAX_EDNS_UDP as u16);
            response.set_edns(edns);
        }
        if message.metadata.op_code != OpCode::Query {
            response.metadata.response_code = ResponseCode::NotImp;
            return response.to_vec().ok();
        }
        if message.queries.len() != 1 {
            response.metadata.response_code = ResponseCode::FormErr;
            return response.to_vec().ok();
        }
        let query = message.queries[0].clone();
        response.add_query(query.clone());
        self.fill(&mut response, &query.name.to_lowercase(), query.query_type);
        let bytes = response.to_vec().ok()?;
        if bytes.len() <= limit {
            return Some(bytes);
        }
        response.truncate().to_vec().ok()
    }

    /// Fills answer, authority and response code for one question.
    fn fill(&self, response: &mut Message, name: &Name, qtype: RecordType) {
        if !self.apex.zone_of(name) {
            response.metadata.authoritative = false;
            response.metadata.response_code = ResponseCode::Refused;
            return;
        }
        let records: Option<Vec<Record>> = if *name == self.apex {
            Some(match qtype {
                RecordType::SOA => vec![self.soa()],
                RecordType::NS => vec![self.ns()],
                RecordType::ANY => vec![self.soa(), self.ns()],
                _ => vec![],
            })
        } else if *name == self.ns_name {
            Some(address_records(name, &self.ns_addrs, qtype, ZONE_TTL))
        } else {
            self.region_records(name, qtype)
        };
        match records {
            Some(records) if !records.is_empty() => {
                response.add_answers(records);
            }
            Some(_) => {
                response.add_authority(self.soa());
            }
            None => {
                response.metadata.response_code = ResponseCode::NXDomain;
                response.add_authority(self.soa());
            }
        }
    }

    /// Records for names under a region; `None` when the name does not exist.
    fn region_records(&self, name: &Name, qtype: RecordType) -> Option<Vec<Record>> {
        let depth =
            usize::from(name.num_labels()).checked_sub(usize::from(self.apex.num_labels()))?;
        let labels: Vec<String> = name
            .iter()
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .collect();
        let regions = self
            .regions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match depth {
            // `{region}.{zone}`: exists because `origin.{region}` is under it.
            1 => regions.contains_key(&labels[0]).then(Vec::new),
            2 if labels[0] == "origin" => {
                let answer = regions.get(&labels[1])?;
                Some(address_records(name, &answer.addrs, qtype, answer.ttl))
            }
            _ => None,
        }
    }

    fn soa(&self) -> Record {
        let rname = Name::from_ascii("hostmaster")
            .and_then(|n| n.append_name(&self.apex))
            .unwrap_or_else(|_| self.apex.clone());
        let soa = SOA::new(
            self.ns_name.clone(),
            rname,
            self.serial,
            300,
            60,
            86_400,
            ZONE_TTL,
        );
        Record::from_rdata(self.apex.clone(), ZONE_TTL, RData::SOA(soa))
    }

    fn ns(&self) -> Record {
        Record::from_rdata(
            self.apex.clone(),
            ZONE_TTL,
            RData::NS(NS(self.ns_name.clone())),
        )
    }
}

/// A and AAAA records for the addresses matching the query type.
fn address_records(name: &Name, addrs: &[IpAddr], qtype: RecordType, ttl: u32) -> Vec<Record> {
    addrs
        .iter()
        .filter_map(|addr| match (addr, qtype) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(*v4))),
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(RData::AAAA(AAAA(*v6))),
            _ => None,
        })
        .map(|rdata| Record::from_rdata(name.clone(), ttl, rdata))
        .collect()
}

/// FORMERR for bytes that do not parse but carry a query header (RFC 1035
/// §4.1.1): the client learns its packet was bad instead of timing out.
fn format_error(request: &[u8]) -> Option<Vec<u8>> {
    let header = request.get(..12)?;
    if header[2] & 0x80 != 0 {
        return None; // a response: never answer it (no reflection loops)
    }
    let id = u16::from_be_bytes([header[0], header[1]]);
    Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
        .to_vec()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn zone() -> Zone {
        let zone = Zone::new(
            "cityboard.localhost",
            &["us-east".into(), "eu-west".into()],
            vec!["127.0.0.1".parse().expect("ip")],
        )
        .expect("zone");
        zone.set_answer(
            "us-east",
            RegionAnswer {
                addrs: vec!["127.0.0.2".parse().expect("ip"), "::2".parse().expect("ip")],
                ttl: 30,
            },
        );
        zone
    }

    fn ask(zone: &Zone, name: &str, qtype: RecordType) -> Message {
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
        let bytes = zone
            .respond(&q.to_vec().expect("encode"), Transport::Udp)
            .expect("answered");
        Message::from_vec(&bytes).expect("decodes")
    }

    #[test]
    fn origin_names() {
        let z = zone();
        let m = ask(&z, "ORIGIN.us-east.cityboard.localhost.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].ttl, 30);
        let m = ask(&z, "origin.us-east.cityboard.localhost.", RecordType::AAAA);
        assert_eq!(m.answers.len(), 1);
        let m = ask(&z, "origin.eu-west.cityboard.localhost.", RecordType::A);
        assert_eq!(
            (
                m.metadata.response_code,
                m.answers.len(),
                m.authorities.len()
            ),
            (ResponseCode::NoError, 0, 1)
        );
    }

    #[test]
    fn apex_unknown_and_foreign_names() {
        let z = zone();
        assert_eq!(
            ask(&z, "cityboard.localhost.", RecordType::SOA)
                .answers
                .len(),
            1
        );
        assert_eq!(
            ask(&z, "cityboard.localhost.", RecordType::NS)
                .answers
                .len(),
            1
        );
        assert_eq!(
            ask(&z, "ns.cityboard.localhost.", RecordType::A)
                .answers
                .len(),
            1
        );
        assert_eq!(
            ask(&z, "us-east.cityboard.localhost.", RecordType::A)
                .metadata
                .response_code,
            ResponseCode::NoError
        );
        for name in [
            "nope.cityboard.localhost.",
            "origin.mars.cityboard.localhost.",
            "a.origin.us-east.cityboard.localhost.",
        ] {
            assert_eq!(
                ask(&z, name, RecordType::A).metadata.response_code,
                ResponseCode::NXDomain,
                "{name}"
            );
        }
        assert_eq!(
            ask(&z, "example.com.", RecordType::A)
                .metadata
                .response_code,
            ResponseCode::Refused
        );
    }

    #[test]
    fn large_udp_answers_are_truncated() {
        let z = zone();
        let addrs = (0..100u8).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        z.set_answer("eu-west", RegionAnswer { addrs, ttl: 30 });
        let m = ask(&z, "origin.eu-west.cityboard.localhost.", RecordType::A);
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty());
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("origin.eu-west.cityboard.localhost.").expect("name"),
            RecordType::A,
        ));
        let bytes = z
            .respond(&q.to_vec().expect("encode"), Transport::Tcp)
            .expect("answered");
        assert_eq!(
            Message::from_vec(&bytes).expect("decodes").answers.len(),
            100
        );
    }

    #[test]
    fn malformed_packets_never_panic() {
        let z = zone();
        assert!(z.respond(&[], Transport::Udp).is_none());
        assert!(z.respond(&[1, 2, 3], Transport::Udp).is_none());
        let garbage = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        let m = Message::from_vec(&z.respond(&garbage, Transport::Udp).expect("formerr"))
            .expect("decodes");
        assert_eq!(
            (m.metadata.id, m.metadata.response_code),
            (0x1234, ResponseCode::FormErr)
        );
        let mut response_bits = garbage;
        response_bits[2] |= 0x80;
        assert!(z.respond(&response_bits, Transport::Udp).is_none());
    }
}
