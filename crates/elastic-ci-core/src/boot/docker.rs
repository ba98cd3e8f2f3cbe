//! Docker's daemon configuration at boot: the keys of `/etc/docker/daemon.json` the
//! stack sets (user-namespace remap, address pools, IPv6, fixed CIDRs, experimental
//! features, the data root on instance storage), the subordinate-id files of the
//! remap, and the network ranges of the settings.
//!
//! [`daemon_json`] is a function of the current file's JSON value: every other key is
//! kept, and a file that is not a JSON object is refused rather than replaced.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Map, Value, json};

use crate::boot::action::SystemAction;
use crate::boot::config::{BootConfig, DockerSettings};
use crate::boot::plan::{EPHEMERAL_PATH, Op};

pub const DAEMON_JSON_PATH: &str = "/etc/docker/daemon.json";
pub const SUBUID_PATH: &str = "/etc/subuid";
pub const SUBGID_PATH: &str = "/etc/subgid";
/// The user whose subordinate ids the daemon maps containers to.
pub const REMAP_USER: &str = "buildkite-agent";
/// The group whose id container root's group maps to.
pub const REMAP_GROUP: &str = "docker";
/// Container ids 1 to 65536 map to host ids from here on.
pub const SUBORDINATE_RANGE_START: u32 = 100_000;
pub const SUBORDINATE_RANGE_SIZE: u32 = 65_536;
/// Size of the networks Docker carves out of the first and second IPv4 pools, and of
/// the IPv6 pool.
pub const IPV4_POOL_1_SIZE: u8 = 20;
pub const IPV4_POOL_2_SIZE: u8 = 24;
pub const IPV6_POOL_SIZE: u8 = 112;
/// The garbage-collection services of the image; their timers are enabled and started.
pub const GC_SERVICES: [&str; 2] = ["docker-gc.service", "docker-low-disk-gc.service"];
pub const GC_TIMERS: [&str; 2] = ["docker-gc.timer", "docker-low-disk-gc.timer"];
/// Installs QEMU handlers so that containers of other architectures run; started
/// again after docker's restart, in case its first start raced with the restart.
pub const BINFMT_SERVICE: &str = "docker-binfmt.service";

/// The ids container root maps to with user-namespace remapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemapIds {
    /// The uid of `buildkite-agent`.
    pub agent_uid: u32,
    /// The gid of the `docker` group.
    pub docker_gid: u32,
}

/// Docker's data root with instance storage.
pub fn data_root() -> String {
    format!("{EPHEMERAL_PATH}/docker")
}

/// `DOCKER_NETWORKING_PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Networking {
    Ipv4,
    /// IPv4 and IPv6; turns on experimental features too, as the original did.
    DualStack,
}

impl Networking {
    pub fn as_str(self) -> &'static str {
        match self {
            Networking::Ipv4 => "ipv4",
            Networking::DualStack => "dualstack",
        }
    }
}

/// An IP network in CIDR notation (`172.17.0.0/12`, `2001:db8:1::/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    address: IpAddr,
    prefix_len: u8,
}

/// Why a CIDR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected an {family} network such as {example} ({reason})")]
pub struct CidrError {
    family: &'static str,
    example: &'static str,
    reason: &'static str,
}

impl Cidr {
    /// An IPv4 network: four decimal octets, `/`, a prefix length from 0 to 32.
    pub fn parse_v4(text: &str) -> Result<Cidr, CidrError> {
        let error = |reason| CidrError { family: "IPv4", example: "172.17.0.0/12", reason };
        let (address, prefix) = text.split_once('/').ok_or(error("no /prefix"))?;
        let address: Ipv4Addr = address.parse().map_err(|_| error("not an IPv4 address"))?;
        let prefix_len = parse_prefix(prefix, 32).ok_or(error("prefix must be 0 to 32"))?;
        Ok(Cidr { address: IpAddr::V4(address), prefix_len })
    }

    /// An IPv6 network: an address, `/`, a prefix length from 0 to 128.
    pub fn parse_v6(text: &str) -> Result<Cidr, CidrError> {
        let error = |reason| CidrError { family: "IPv6", example: "2001:db8:1::/64", reason };
        let (address, prefix) = text.split_once('/').ok_or(error("no /prefix"))?;
        let address: Ipv6Addr = address.parse().map_err(|_| error("not an IPv6 address"))?;
        let prefix_len = parse_prefix(prefix, 128).ok_or(error("prefix must be 0 to 128"))?;
        Ok(Cidr { address: IpAddr::V6(address), prefix_len })
    }

    pub fn prefix_len(self) -> u8 {
        self.prefix_len
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

fn parse_prefix(text: &str, max: u8) -> Option<u8> {
    if text.is_empty() || text.len() > 3 || !text.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    text.parse::<u8>().ok().filter(|prefix| *prefix <= max)
}

/// A `daemon.json` that is valid JSON but not an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a JSON object, found {found}")]
pub struct DaemonJsonError {
    found: &'static str,
}

/// `current` with the stack's keys set, in the original's order of edits:
/// `userns-remap`, the networking keys, `fixed-cidr`, `experimental`, `data-root`.
/// Every other key is kept.
pub fn daemon_json(
    current: &Value,
    docker: &DockerSettings,
    data_root: Option<&str>,
) -> Result<Value, DaemonJsonError> {
    let Value::Object(current) = current else {
        return Err(DaemonJsonError { found: json_kind(current) });
    };
    let mut config: Map<String, Value> = current.clone();
    let mut set = |key: &str, value: Value| {
        config.insert(key.to_owned(), value);
    };
    if docker.userns_remap {
        set("userns-remap", json!(REMAP_USER));
    }
    let ipv4_pools = [
        json!({"base": docker.ipv4_address_pool_1.to_string(), "size": IPV4_POOL_1_SIZE}),
        json!({"base": docker.ipv4_address_pool_2.to_string(), "size": IPV4_POOL_2_SIZE}),
    ];
    match docker.networking {
        Networking::Ipv4 => set("default-address-pools", Value::from(ipv4_pools.to_vec())),
        Networking::DualStack => {
            set("ipv6", json!(true));
            set("fixed-cidr-v6", json!(docker.fixed_cidr_v6.to_string()));
            set("ip6tables", json!(true));
            let mut pools = ipv4_pools.to_vec();
            pools.push(
                json!({"base": docker.ipv6_address_pool.to_string(), "size": IPV6_POOL_SIZE}),
            );
            set("default-address-pools", Value::from(pools));
        }
    }
    if let Some(cidr) = &docker.fixed_cidr_v4 {
        set("fixed-cidr", json!(cidr.to_string()));
    }
    if docker.experimental || docker.networking == Networking::DualStack {
        set("experimental", json!(true));
    }
    if let Some(data_root) = data_root {
        set("data-root", json!(data_root));
    }
    Ok(Value::Object(config))
}

/// The Docker configuration step: the subordinate-id files, the data root,
/// `daemon.json`, the garbage-collection timers with the stack's prune age, and a
/// restart of docker. `remap_ids` is `None` only when a dry run could not look the ids
/// up.
pub fn ops(config: &BootConfig, remap_ids: Option<RemapIds>) -> Vec<Op> {
    let mut ops = Vec::new();
    let write =
        |path: String, content: String| Op::WriteFile { path, mode: 0o644, content, show: true };
    if config.docker.userns_remap {
        match remap_ids {
            Some(ids) => {
                ops.push(write(SUBUID_PATH.to_owned(), subordinate_ids(ids.agent_uid)));
                ops.push(write(SUBGID_PATH.to_owned(), subordinate_ids(ids.docker_gid)));
            }
            None => ops.push(Op::Note(format!(
                "{SUBUID_PATH} and {SUBGID_PATH} are not shown: the ids of {REMAP_USER} and the {REMAP_GROUP} group could not be looked up"
            ))),
        }
    }
    let data_root = config.instance_storage.then(data_root);
    if let Some(dir) = &data_root {
        ops.push(Op::CreateDir { path: dir.clone(), mode: 0o711 });
    }
    ops.push(Op::ConfigureDockerDaemon {
        path: DAEMON_JSON_PATH.to_owned(),
        docker: config.docker.clone(),
        data_root,
    });
    for service in GC_SERVICES {
        ops.push(write(
            format!("/etc/systemd/system/{service}.d/prune-until.conf"),
            prune_until_drop_in(&config.docker.prune_until),
        ));
    }
    ops.push(Op::System(SystemAction::systemctl(&["daemon-reload"])));
    let mut enable = vec!["enable", "--now"];
    enable.extend(GC_TIMERS);
    ops.push(Op::System(SystemAction::systemctl(&enable)));
    ops.push(Op::System(SystemAction::systemctl(&["restart", "docker.service"])));
    ops
}

/// `daemon.json` as written: two-space indentation, keys sorted, a final newline.
pub fn render_daemon_json(config: &Value) -> String {
    let mut text = serde_json::to_string_pretty(config).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}

/// `/etc/subuid` (with the agent's uid) or `/etc/subgid` (with the docker group's
/// gid): container root maps to `first_id`, container ids 1 to 65536 to 100000
/// onwards. The file holds only these two lines, as the original wrote it.
pub fn subordinate_ids(first_id: u32) -> String {
    format!(
        "{REMAP_USER}:{first_id}:1\n{REMAP_USER}:{SUBORDINATE_RANGE_START}:{SUBORDINATE_RANGE_SIZE}\n"
    )
}

/// A systemd drop-in that gives a garbage-collection unit the stack's prune age (the
/// units default to 4h, and the original never passed the stack's setting on).
pub fn prune_until_drop_in(prune_until: &str) -> String {
    format!("[Service]\nEnvironment=DOCKER_PRUNE_UNTIL={prune_until}\n")
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};
    use test_case::test_case;

    use super::*;

    /// The template's defaults.
    fn settings() -> DockerSettings {
        DockerSettings {
            experimental: false,
            userns_remap: false,
            prune_until: "4h".to_owned(),
            pre_exit_disk_cleanup: false,
            builder_prune: false,
            networking: Networking::Ipv4,
            ipv4_address_pool_1: Cidr::parse_v4("172.17.0.0/12").unwrap(),
            ipv4_address_pool_2: Cidr::parse_v4("192.168.0.0/16").unwrap(),
            ipv6_address_pool: Cidr::parse_v6("2001:db8:2::/104").unwrap(),
            fixed_cidr_v4: None,
            fixed_cidr_v6: Cidr::parse_v6("2001:db8:1::/64").unwrap(),
        }
    }

    /// The image's daemon.json, changed by `settings`.
    fn check(docker: &DockerSettings, data_root: Option<&str>, expect: Expect) {
        let image = json!({"storage-driver": "overlay2"});
        let config = daemon_json(&image, docker, data_root).unwrap();
        expect.assert_eq(&render_daemon_json(&config));
        // Applying the settings again changes nothing.
        assert_eq!(daemon_json(&config, docker, data_root).unwrap(), config);
    }

    #[test]
    fn ipv4_sets_two_address_pools() {
        check(
            &settings(),
            None,
            expect![[r#"
                {
                  "default-address-pools": [
                    {
                      "base": "172.17.0.0/12",
                      "size": 20
                    },
                    {
                      "base": "192.168.0.0/16",
                      "size": 24
                    }
                  ],
                  "storage-driver": "overlay2"
                }
            "#]],
        );
    }

    #[test]
    fn dualstack_adds_ipv6_and_forces_experimental() {
        let docker = DockerSettings {
            networking: Networking::DualStack,
            ipv6_address_pool: Cidr::parse_v6("fd00:beef::/96").unwrap(),
            fixed_cidr_v6: Cidr::parse_v6("FD00:1::/64").unwrap(),
            ..settings()
        };
        check(
            &docker,
            None,
            expect![[r#"
                {
                  "default-address-pools": [
                    {
                      "base": "172.17.0.0/12",
                      "size": 20
                    },
                    {
                      "base": "192.168.0.0/16",
                      "size": 24
                    },
                    {
                      "base": "fd00:beef::/96",
                      "size": 112
                    }
                  ],
                  "experimental": true,
                  "fixed-cidr-v6": "fd00:1::/64",
                  "ip6tables": true,
                  "ipv6": true,
                  "storage-driver": "overlay2"
                }
            "#]],
        );
    }

    #[test]
    fn userns_remap_and_experimental() {
        let docker = DockerSettings { userns_remap: true, experimental: true, ..settings() };
        check(
            &docker,
            None,
            expect![[r#"
                {
                  "default-address-pools": [
                    {
                      "base": "172.17.0.0/12",
                      "size": 20
                    },
                    {
                      "base": "192.168.0.0/16",
                      "size": 24
                    }
                  ],
                  "experimental": true,
                  "storage-driver": "overlay2",
                  "userns-remap": "buildkite-agent"
                }
            "#]],
        );
    }

    #[test]
    fn fixed_cidrs_and_custom_pools() {
        let docker = DockerSettings {
            ipv4_address_pool_1: Cidr::parse_v4("10.0.0.0/8").unwrap(),
            ipv4_address_pool_2: Cidr::parse_v4("10.200.0.0/16").unwrap(),
            fixed_cidr_v4: Some(Cidr::parse_v4("172.17.1.0/24").unwrap()),
            ..settings()
        };
        check(
            &docker,
            None,
            expect![[r#"
                {
                  "default-address-pools": [
                    {
                      "base": "10.0.0.0/8",
                      "size": 20
                    },
                    {
                      "base": "10.200.0.0/16",
                      "size": 24
                    }
                  ],
                  "fixed-cidr": "172.17.1.0/24",
                  "storage-driver": "overlay2"
                }
            "#]],
        );
    }

    #[test]
    fn instance_storage_moves_the_data_root() {
        check(
            &settings(),
            Some("/mnt/ephemeral/docker"),
            expect![[r#"
                {
                  "data-root": "/mnt/ephemeral/docker",
                  "default-address-pools": [
                    {
                      "base": "172.17.0.0/12",
                      "size": 20
                    },
                    {
                      "base": "192.168.0.0/16",
                      "size": 24
                    }
                  ],
                  "storage-driver": "overlay2"
                }
            "#]],
        );
    }

    #[test]
    fn keeps_other_keys_and_replaces_the_stack_keys() {
        let current = json!({
            "log-driver": "journald",
            "default-address-pools": [{"base": "10.99.0.0/16", "size": 24}],
            "experimental": false,
        });
        let config = daemon_json(&current, &settings(), None).unwrap();
        assert_eq!(config["log-driver"], "journald");
        assert_eq!(config["default-address-pools"][0]["base"], "172.17.0.0/12");
        // Experimental off in the settings leaves the file's own value.
        assert_eq!(config["experimental"], false);
    }

    #[test_case(json!([]), "expected a JSON object, found an array")]
    #[test_case(json!("x"), "expected a JSON object, found a string")]
    #[test_case(Value::Null, "expected a JSON object, found null")]
    fn refuses_a_file_that_is_not_an_object(current: Value, message: &str) {
        assert_eq!(daemon_json(&current, &settings(), None).unwrap_err().to_string(), message);
    }

    #[test]
    fn subordinate_id_files() {
        expect![[r#"
            buildkite-agent:2000:1
            buildkite-agent:100000:65536
        "#]]
        .assert_eq(&subordinate_ids(2000));
    }

    #[test_case("172.17.0.0/12", Some("172.17.0.0/12"))]
    #[test_case("0.0.0.0/0", Some("0.0.0.0/0"))]
    #[test_case("10.0.0.0/33", None)]
    #[test_case("10.0.0/8", None)]
    #[test_case("10.0.0.0", None)]
    #[test_case("10.0.0.0/+8", None)]
    #[test_case("2001:db8::/64", None)]
    #[test_case(" 10.0.0.0/8", None)]
    fn ipv4_networks(text: &str, parsed: Option<&str>) {
        assert_eq!(Cidr::parse_v4(text).ok().map(|cidr| cidr.to_string()).as_deref(), parsed);
    }

    #[test_case("2001:db8:1::/64", Some("2001:db8:1::/64"))]
    #[test_case("2001:DB8:2::/104", Some("2001:db8:2::/104"))]
    #[test_case("::/0", Some("::/0"))]
    #[test_case("2001:db8::/129", None)]
    #[test_case("2001:db8:::/64", None)]
    #[test_case("172.17.0.0/12", None)]
    fn ipv6_networks(text: &str, parsed: Option<&str>) {
        assert_eq!(Cidr::parse_v6(text).ok().map(|cidr| cidr.to_string()).as_deref(), parsed);
    }

    #[test]
    fn cidr_errors_say_what_was_expected() {
        assert_eq!(
            Cidr::parse_v4("10.0.0.0/40").unwrap_err().to_string(),
            "expected an IPv4 network such as 172.17.0.0/12 (prefix must be 0 to 32)"
        );
        assert_eq!(
            Cidr::parse_v6("fd00::").unwrap_err().to_string(),
            "expected an IPv6 network such as 2001:db8:1::/64 (no /prefix)"
        );
    }
}
