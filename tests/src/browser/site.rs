//! The site as the browser tests reach it: through the shared stack's edge
//! (the Worker under workerd), never the origin directly, at the apex and
//! city hosts a visitor would type, from an address the edge's own city
//! database places in the city under test.

use cityboard_deploy::edge::{addresses_in, embedded_database};

use super::Options;
use crate::stack_edge::StackEdge;

/// One served city of the shared stack and a visitor address in it.
pub struct Site {
    /// The shared stack's edge.
    pub edge: StackEdge,
    /// The city's slug (its host label).
    pub city: String,
    /// An IPv4 address the edge places in the city.
    pub ip: String,
}

impl Site {
    /// `city` of the stack `deploy/test` started; panics if the stack does
    /// not serve it or the edge's database places no address there.
    pub fn shared(city: &str) -> Site {
        let edge = StackEdge::shared();
        edge.region_of(city);
        let addresses = addresses_in(&embedded_database(), &[city]).expect("the edge's database");
        let ip = addresses
            .get(city)
            .unwrap_or_else(|| panic!("the edge's database places no /16 in {city}"))
            .to_string();
        Site {
            edge,
            city: city.to_string(),
            ip,
        }
    }

    /// `http://{apex}:{port}{path}`.
    pub fn apex_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.edge.host(None))
    }

    /// `http://{city}.{apex}:{port}{path}`.
    pub fn city_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.edge.host(Some(&self.city)))
    }

    /// A browser of a visitor from the city: scripts on or off, network
    /// log on (the journey reads statuses and headers).
    pub fn visitor(&self, javascript: bool) -> Options {
        Options {
            javascript,
            client_ip: Some(self.ip.clone()),
            log_network: true,
        }
    }
}

/// A word no other post contains, for finding this run's posts by search.
pub fn marker(prefix: &str) -> String {
    format!(
        "{prefix}{}x{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    )
}
