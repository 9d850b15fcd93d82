//! A small authoritative DNS server for tests: real DNS messages over UDP on
//! 127.0.0.1 (port chosen by the kernel), answering MX, A, AAAA, TXT and PTR
//! from a table. Names not in the table are NXDOMAIN; names in it without the asked
//! type get an empty NOERROR answer (NODATA); names marked `servfail` get
//! SERVFAIL. Tern is pointed at it with `[relay] nameservers`, so no test ever
//! asks the machine's own resolver.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, MX, PTR, SOA, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

/// The records of one name.
#[derive(Debug, Clone, Default)]
struct Entry {
    mx: Vec<(u16, String)>,
    a: Vec<Ipv4Addr>,
    aaaa: Vec<Ipv6Addr>,
    /// TXT records, each its character-strings.
    txt: Vec<Vec<String>>,
    /// PTR targets.
    ptr: Vec<String>,
    servfail: bool,
}

/// The running server; stops when dropped.
pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<Mutex<HashMap<String, Entry>>>,
    stop: Arc<AtomicBool>,
    /// How many queries were answered.
    pub queries: Arc<Mutex<Vec<(String, RecordType)>>>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsServer {
    /// Starts an empty server.
    pub fn start() -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind DNS socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let zone: Arc<Mutex<HashMap<String, Entry>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let queries: Arc<Mutex<Vec<(String, RecordType)>>> = Arc::default();
        {
            let (zone, stop, queries) = (zone.clone(), stop.clone(), queries.clone());
            std::thread::spawn(move || serve(socket, zone, stop, queries));
        }
        DnsServer {
            addr,
            zone,
            stop,
            queries,
        }
    }

    fn edit(&self, name: &str, f: impl FnOnce(&mut Entry)) -> &Self {
        f(self.zone.lock().unwrap().entry(key(name)).or_default());
        self
    }

    /// Adds an MX record (`exchange` "." for a null MX).
    pub fn mx(&self, name: &str, preference: u16, exchange: &str) -> &Self {
        self.edit(name, |e| e.mx.push((preference, exchange.to_string())))
    }

    /// Adds an A record.
    pub fn a(&self, name: &str, ip: &str) -> &Self {
        let ip = ip.parse().unwrap();
        self.edit(name, |e| e.a.push(ip))
    }

    /// Adds an AAAA record.
    pub fn aaaa(&self, name: &str, ip: &str) -> &Self {
        let ip = ip.parse().unwrap();
        self.edit(name, |e| e.aaaa.push(ip))
    }

    /// Adds a TXT record, split into strings of at most 255 octets as a
    /// zone file would (RFC 1035 §3.3.14).
    pub fn txt(&self, name: &str, text: &str) -> &Self {
        let strings: Vec<String> = text
            .as_bytes()
            .chunks(255)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        self.edit(name, |e| e.txt.push(strings))
    }

    /// Adds a PTR record for `ip` (at its in-addr.arpa or ip6.arpa name).
    pub fn ptr(&self, ip: &str, target: &str) -> &Self {
        let name = reverse_name(ip.parse().unwrap());
        self.edit(&name, |e| e.ptr.push(target.to_string()))
    }

    /// Makes every query for `name` fail with SERVFAIL.
    pub fn servfail(&self, name: &str) -> &Self {
        self.edit(name, |e| e.servfail = true)
    }

    /// The `[relay]` nameservers line for tern.toml.
    pub fn nameservers_toml(&self) -> String {
        format!("nameservers = [\"{}\"]", self.addr)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    socket: UdpSocket,
    zone: Arc<Mutex<HashMap<String, Entry>>>,
    stop: Arc<AtomicBool>,
    queries: Arc<Mutex<Vec<(String, RecordType)>>>,
) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Ok(request) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let response = answer(&request, &zone.lock().unwrap(), &queries);
        if let Ok(bytes) = response.to_vec() {
            let _ = socket.send_to(&bytes, from);
        }
    }
}

fn answer(
    request: &Message,
    zone: &HashMap<String, Entry>,
    queries: &Mutex<Vec<(String, RecordType)>>,
) -> Message {
    let id = request.metadata.id;
    let Some(query) = request.queries.first() else {
        return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
    };
    let qname = query.name().clone();
    let qtype = query.query_type();
    queries
        .lock()
        .unwrap()
        .push((key(&qname.to_ascii()), qtype));
    let mut response = Message::new(id, MessageType::Response, OpCode::Query);
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.add_query(query.clone());
    let Some(entry) = zone.get(&key(&qname.to_ascii())) else {
        response.metadata.response_code = ResponseCode::NXDomain;
        response.authorities.push(soa(&qname));
        return response;
    };
    if entry.servfail {
        response.metadata.response_code = ResponseCode::ServFail;
        return response;
    }
    let records: Vec<RData> = match qtype {
        RecordType::MX => entry
            .mx
            .iter()
            .map(|(p, x)| RData::MX(MX::new(*p, fqdn(x))))
            .collect(),
        RecordType::A => entry.a.iter().map(|ip| RData::A(A(*ip))).collect(),
        RecordType::AAAA => entry.aaaa.iter().map(|ip| RData::AAAA(AAAA(*ip))).collect(),
        RecordType::TXT => entry
            .txt
            .iter()
            .map(|strings| RData::TXT(TXT::new(strings.clone())))
            .collect(),
        RecordType::PTR => entry
            .ptr
            .iter()
            .map(|target| RData::PTR(PTR(fqdn(target))))
            .collect(),
        _ => Vec::new(),
    };
    if records.is_empty() {
        response.authorities.push(soa(&qname));
    }
    for rdata in records {
        response.add_answer(Record::from_rdata(qname.clone(), 60, rdata));
    }
    response
}

/// `name` as a fully qualified DNS name.
fn fqdn(name: &str) -> Name {
    Name::from_str(&format!("{}.", name.trim_end_matches('.'))).unwrap()
}

/// `25.2.0.192.in-addr.arpa`, or the nibbles of an IPv6 address under
/// `ip6.arpa` (RFC 3596 §2.5).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut name = String::new();
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xF, byte >> 4));
            }
            name + "ip6.arpa"
        }
    }
}

fn soa(name: &Name) -> Record {
    let ns = Name::from_str("ns.test.").unwrap();
    let rdata = SOA::new(ns.clone(), ns, 1, 3600, 600, 86_400, 60);
    Record::from_rdata(name.clone(), 60, RData::SOA(rdata))
}
