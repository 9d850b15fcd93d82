//! What the https listener answers, as pure functions of the config and the
//! request: the MTA-STS policy (RFC 8461 §3.2) on `mta-sts.<domain>`,
//! Thunderbird-style autoconfiguration and an Apple configuration profile
//! (no password in it) naming the IMAP port and the submission listeners'
//! ports; 404 for everything else.

use crate::config::Config;

use super::http::{query_value, Request, Response};

/// The client-facing ports the pages name: the submission listeners as
/// bound (STARTTLS on 587, implicit TLS on 465).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailPorts {
    pub submission: Option<u16>,
    pub submissions: Option<u16>,
}

/// The answer to `request` on the https listener.
pub fn respond(config: &Config, ports: MailPorts, request: &Request) -> Response {
    match request.path.as_str() {
        "/.well-known/mta-sts.txt" => match mta_sts_domain(config, &request.host) {
            Some(_) => match mta_sts_policy(config) {
                Some(policy) => Response::text(200, &policy),
                None => Response::not_found(),
            },
            None => Response::not_found(),
        },
        "/mail/config-v1.1.xml" | "/.well-known/autoconfig/mail/config-v1.1.xml" => {
            match (&config.autoconfig, client_domain(config, request)) {
                (Some(_), Some(domain)) => Response::with(
                    200,
                    "application/xml; charset=utf-8",
                    autoconfig_xml(config, ports, &domain).into_bytes(),
                ),
                _ => Response::not_found(),
            }
        }
        "/apple.mobileconfig" => match (&config.autoconfig, client_domain(config, request)) {
            (Some(_), Some(domain)) => {
                let email = email_of(config, request);
                Response::with(
                    200,
                    "application/x-apple-aspen-config",
                    mobileconfig(config, ports, &domain, email.as_deref()).into_bytes(),
                )
            }
            _ => Response::not_found(),
        },
        _ => Response::not_found(),
    }
}

/// The local domain of an `mta-sts.<domain>` host name.
fn mta_sts_domain<'a>(config: &'a Config, host: &str) -> Option<&'a str> {
    let domain = host.strip_prefix("mta-sts.")?;
    config
        .domains
        .iter()
        .find(|d| d.as_str() == domain)
        .map(String::as_str)
}

/// The policy text, CRLF-terminated lines (RFC 8461 §3.2); `None` when
/// `[mta_sts]` is off.
pub fn mta_sts_policy(config: &Config) -> Option<String> {
    let sts = config.mta_sts.as_ref()?;
    Some(format!(
        "version: STSv1\r\nmode: {}\r\nmx: {}\r\nmax_age: {}\r\n",
        sts.mode.name(),
        config.hostname,
        sts.max_age.as_secs()
    ))
}

/// A well-formed address at a local domain given in the query
/// (`emailaddress=` for Thunderbird, `email=` for the profile).
fn email_of(config: &Config, request: &Request) -> Option<String> {
    let q = request.query.as_deref();
    let email = query_value(q, "emailaddress").or_else(|| query_value(q, "email"))?;
    let (local, domain) = email.rsplit_once('@')?;
    let ok_local = !local.is_empty()
        && local.len() <= 64
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    let domain = domain.to_ascii_lowercase();
    (ok_local && config.domains.contains(&domain)).then(|| format!("{local}@{domain}"))
}

/// Which local domain the client asks about: the address's, the
/// `autoconfig.<domain>` host's, or the first local domain.
fn client_domain(config: &Config, request: &Request) -> Option<String> {
    if let Some(email) = email_of(config, request) {
        return email.rsplit_once('@').map(|(_, d)| d.to_string());
    }
    if let Some(domain) = request.host.strip_prefix("autoconfig.") {
        if config.domains.iter().any(|d| d == domain) {
            return Some(domain.to_string());
        }
    }
    config.domains.first().cloned()
}

/// Thunderbird's autoconfig format (clientConfig version 1.1).
pub fn autoconfig_xml(config: &Config, ports: MailPorts, domain: &str) -> String {
    let host = xml(&config.hostname);
    let domain = xml(domain);
    let imap = config.autoconfig.as_ref().map_or(993, |a| a.imap_port);
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <clientConfig version=\"1.1\">\n\
         \x20 <emailProvider id=\"{domain}\">\n\
         \x20   <domain>{domain}</domain>\n\
         \x20   <displayName>{domain}</displayName>\n\
         \x20   <displayShortName>{domain}</displayShortName>\n\
         \x20   <incomingServer type=\"imap\">\n\
         \x20     <hostname>{host}</hostname>\n\
         \x20     <port>{imap}</port>\n\
         \x20     <socketType>SSL</socketType>\n\
         \x20     <authentication>password-cleartext</authentication>\n\
         \x20     <username>%EMAILADDRESS%</username>\n\
         \x20   </incomingServer>\n"
    );
    for (port, socket) in [(ports.submissions, "SSL"), (ports.submission, "STARTTLS")] {
        if let Some(port) = port {
            out.push_str(&format!(
                "    <outgoingServer type=\"smtp\">\n\
                 \x20     <hostname>{host}</hostname>\n\
                 \x20     <port>{port}</port>\n\
                 \x20     <socketType>{socket}</socketType>\n\
                 \x20     <authentication>password-cleartext</authentication>\n\
                 \x20     <username>%EMAILADDRESS%</username>\n\
                 \x20   </outgoingServer>\n"
            ));
        }
    }
    out.push_str("  </emailProvider>\n</clientConfig>\n");
    out
}

/// An Apple configuration profile with one IMAP account (no password: the
/// device asks for it). `email`: filled in when the link gave one.
pub fn mobileconfig(
    config: &Config,
    ports: MailPorts,
    domain: &str,
    email: Option<&str>,
) -> String {
    let host = xml(&config.hostname);
    let imap = config.autoconfig.as_ref().map_or(993, |a| a.imap_port);
    // 465 (implicit TLS) when there is one, else 587 with STARTTLS (Apple's
    // "use SSL" covers both).
    let smtp = ports.submissions.or(ports.submission).unwrap_or(465);
    let seed = format!("{}|{domain}|{}", config.hostname, email.unwrap_or(""));
    let (outer, inner) = (uuid(&seed, "profile"), uuid(&seed, "account"));
    let reverse: String = domain.split('.').rev().collect::<Vec<_>>().join(".");
    let user = email
        .map(|e| {
            format!(
                "      <key>EmailAddress</key><string>{0}</string>\n\
                 \x20     <key>IncomingMailServerUsername</key><string>{0}</string>\n\
                 \x20     <key>OutgoingMailServerUsername</key><string>{0}</string>\n",
                xml(e)
            )
        })
        .unwrap_or_default();
    let domain = xml(domain);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n\
         <dict>\n\
         \x20 <key>PayloadContent</key>\n\
         \x20 <array>\n\
         \x20   <dict>\n\
         \x20     <key>EmailAccountDescription</key><string>{domain}</string>\n\
         \x20     <key>EmailAccountType</key><string>EmailTypeIMAP</string>\n\
         {user}\
         \x20     <key>IncomingMailServerHostName</key><string>{host}</string>\n\
         \x20     <key>IncomingMailServerPortNumber</key><integer>{imap}</integer>\n\
         \x20     <key>IncomingMailServerUseSSL</key><true/>\n\
         \x20     <key>IncomingMailServerAuthentication</key><string>EmailAuthPassword</string>\n\
         \x20     <key>OutgoingMailServerHostName</key><string>{host}</string>\n\
         \x20     <key>OutgoingMailServerPortNumber</key><integer>{smtp}</integer>\n\
         \x20     <key>OutgoingMailServerUseSSL</key><true/>\n\
         \x20     <key>OutgoingMailServerAuthentication</key><string>EmailAuthPassword</string>\n\
         \x20     <key>OutgoingPasswordSameAsIncomingPassword</key><true/>\n\
         \x20     <key>PayloadType</key><string>com.apple.mail.managed</string>\n\
         \x20     <key>PayloadIdentifier</key><string>{reverse}.tern.mail.account</string>\n\
         \x20     <key>PayloadUUID</key><string>{inner}</string>\n\
         \x20     <key>PayloadVersion</key><integer>1</integer>\n\
         \x20   </dict>\n\
         \x20 </array>\n\
         \x20 <key>PayloadDisplayName</key><string>Mail at {domain}</string>\n\
         \x20 <key>PayloadIdentifier</key><string>{reverse}.tern.mail</string>\n\
         \x20 <key>PayloadType</key><string>Configuration</string>\n\
         \x20 <key>PayloadUUID</key><string>{outer}</string>\n\
         \x20 <key>PayloadVersion</key><integer>1</integer>\n\
         </dict>\n\
         </plist>\n",
        reverse = xml(&reverse),
    )
}

/// A stable UUID-shaped identifier (the same profile gets the same one, so
/// installing it again replaces rather than duplicates).
fn uuid(seed: &str, what: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{what}|{seed}").as_bytes());
    let h: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// XML character escaping.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(extra: &str) -> Config {
        let text = format!(
            "hostname = \"mx.example.org\"\ndata_dir = \"/tmp/x\"\n\
             domains = [\"example.org\", \"example.net\"]\n\
             [[listener]]\naddress = \"127.0.0.1:25\"\nrole = \"mx\"\n\
             [[listener]]\naddress = \"127.0.0.1:443\"\nrole = \"https\"\n\
             [[user]]\nname = \"me\"\n{extra}"
        );
        Config::parse(&text, Path::new("tern.toml")).unwrap()
    }

    fn get(host: &str, target: &str) -> Request {
        super::super::http::parse(
            format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        )
        .unwrap()
    }

    const PORTS: MailPorts = MailPorts {
        submission: Some(587),
        submissions: Some(465),
    };

    #[test]
    fn the_mta_sts_policy_is_exact_and_only_on_its_names() {
        let c = config("[mta_sts]\nmode = \"enforce\"\nmax_age = \"1d\"\n");
        let r = respond(
            &c,
            PORTS,
            &get("mta-sts.example.net", "/.well-known/mta-sts.txt"),
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            b"version: STSv1\r\nmode: enforce\r\nmx: mx.example.org\r\nmax_age: 86400\r\n"
        );
        for host in ["mx.example.org", "mta-sts.example.com", ""] {
            let r = respond(&c, PORTS, &get(host, "/.well-known/mta-sts.txt"));
            assert_eq!(r.status, 404, "{host}");
        }
        let off = config("");
        let r = respond(
            &off,
            PORTS,
            &get("mta-sts.example.org", "/.well-known/mta-sts.txt"),
        );
        assert_eq!(r.status, 404);
    }

    #[test]
    fn autoconfig_names_the_ports_and_the_domain() {
        let c = config("[autoconfig]\nimap_port = 1993\n");
        for path in [
            "/mail/config-v1.1.xml?emailaddress=me%40example.net",
            "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=me%40example.net",
        ] {
            let r = respond(&c, PORTS, &get("autoconfig.example.org", path));
            assert_eq!(r.status, 200);
            let body = String::from_utf8(r.body).unwrap();
            assert!(body.contains("<domain>example.net</domain>"), "{body}");
            assert!(body.contains("<port>1993</port>"));
            assert!(body.contains("<port>465</port>\n      <socketType>SSL"));
            assert!(body.contains("<port>587</port>\n      <socketType>STARTTLS"));
        }
        let r = respond(
            &c,
            PORTS,
            &get("autoconfig.example.net", "/mail/config-v1.1.xml"),
        );
        assert!(String::from_utf8(r.body)
            .unwrap()
            .contains("<domain>example.net</domain>"));
        let off = config("");
        assert_eq!(
            respond(&off, PORTS, &get("x", "/mail/config-v1.1.xml")).status,
            404
        );
    }

    #[test]
    fn the_apple_profile_has_no_password_and_a_stable_uuid() {
        let c = config("[autoconfig]\n");
        let r = respond(
            &c,
            PORTS,
            &get(
                "autoconfig.example.org",
                "/apple.mobileconfig?email=me%40example.org",
            ),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "application/x-apple-aspen-config");
        let body = String::from_utf8(r.body).unwrap();
        assert!(body.contains("<string>me@example.org</string>"));
        assert!(body.contains("<integer>993</integer>") && body.contains("<integer>465</integer>"));
        assert!(!body.to_lowercase().contains("password</key><string"));
        let again = respond(
            &c,
            PORTS,
            &get(
                "autoconfig.example.org",
                "/apple.mobileconfig?email=me%40example.org",
            ),
        );
        assert_eq!(String::from_utf8(again.body).unwrap(), body);
        // An address elsewhere or with odd characters is not echoed.
        let r = respond(
            &c,
            PORTS,
            &get("x", "/apple.mobileconfig?email=%3Cscript%3E%40example.org"),
        );
        let body = String::from_utf8(r.body).unwrap();
        assert!(
            !body.contains("<script") && !body.contains("&lt;script"),
            "{body}"
        );
        assert!(!body.contains("EmailAddress"), "{body}");
    }

    #[test]
    fn everything_else_is_404() {
        let c = config("[autoconfig]\n[mta_sts]\n");
        for path in [
            "/",
            "/index.html",
            "/../etc/passwd",
            "/.well-known/",
            "/mail/",
        ] {
            assert_eq!(respond(&c, PORTS, &get("mx.example.org", path)).status, 404);
        }
    }
}
