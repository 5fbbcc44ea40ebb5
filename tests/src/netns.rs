//! A laptop with two uplinks, made of real Linux network namespaces, for
//! the network-switch test that moves the agent without calling into it.
//!
//! [`Laptop::create`] makes a network namespace (the laptop) joined to the
//! root namespace by two veth pairs: `wifi0` (uplink A) and `hotspot0`
//! (uplink B), each its own /24 with the gateway on the root side, and puts
//! the relay's address (a /32) on the root namespace's `lo`. At first only
//! Wi‑Fi is up, with the default route. [`Laptop::switch_to_hotspot`] does
//! what losing Wi‑Fi and joining a phone's hotspot does to the routing
//! table: Wi‑Fi goes down and loses its address, the hotspot comes up with
//! another address and the default route. A process started through
//! [`Laptop::exec_prefix`] (`ip netns exec NAME`) sees its source address
//! towards the relay really change.
//!
//! Needs root and iproute2's `ip`: [`prerequisites`] says whether they are
//! here (failing when `CI=true`, else skipping with a message). Everything
//! made is removed when the [`Laptop`] is dropped, on panic too.

use std::process::Command;

/// `ip ARGS…`, or why it failed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether network namespaces can be made here: root and `ip`. With
/// `CI=true` a missing one fails (panics); elsewhere it is skipped with a
/// message on stderr and this returns false.
pub fn prerequisites() -> bool {
    #[allow(unsafe_code)]
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let missing = if !root {
        Some("root (to make network namespaces)".to_owned())
    } else {
        ip(&["-V"]).err()
    };
    let Some(missing) = missing else {
        return true;
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "network-namespace test prerequisite missing in CI: {missing}"
    );
    eprintln!("SKIPPED: network-namespace test needs {missing}");
    false
}

/// One uplink: a veth pair, its root-side gateway and the laptop's address.
#[derive(Debug)]
struct Uplink {
    /// The root namespace's end (the "router").
    root_if: String,
    /// The laptop's end.
    laptop_if: &'static str,
    /// The gateway's address (root side).
    gateway: String,
    /// The laptop's address on this uplink.
    address: String,
}

/// A network namespace with two uplinks to the root namespace; removed on
/// drop. See the module documentation.
#[derive(Debug)]
pub struct Laptop {
    name: String,
    relay_ip: String,
    wifi: Uplink,
    hotspot: Uplink,
}

impl Laptop {
    /// Makes the namespace, its two uplinks (Wi‑Fi up with the default
    /// route, the hotspot down) and the relay's address on the root
    /// namespace's `lo`. Panics, after removing what was made, when a step
    /// fails.
    pub fn create() -> Laptop {
        // Names and subnets from the pid, so that two test processes (or a
        // helper's test and another's) never share them.
        let id = std::process::id() % 80;
        let base = id * 3;
        let laptop = Laptop {
            name: format!("deskside-laptop-{}", std::process::id()),
            relay_ip: format!("10.77.{base}.1"),
            wifi: Uplink {
                root_if: format!("dswifi{}", std::process::id()),
                laptop_if: "wifi0",
                gateway: format!("10.77.{}.1", base + 1),
                address: format!("10.77.{}.2", base + 1),
            },
            hotspot: Uplink {
                root_if: format!("dshot{}", std::process::id()),
                laptop_if: "hotspot0",
                gateway: format!("10.77.{}.1", base + 2),
                address: format!("10.77.{}.2", base + 2),
            },
        };
        if let Err(e) = laptop.build() {
            drop(laptop);
            panic!("cannot build the laptop's network namespace: {e}");
        }
        laptop
    }

    fn build(&self) -> Result<(), String> {
        let ns = self.name.as_str();
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["addr", "add", &format!("{}/32", self.relay_ip), "dev", "lo"])?;
        for uplink in [&self.wifi, &self.hotspot] {
            ip(&[
                "link",
                "add",
                &uplink.root_if,
                "type",
                "veth",
                "peer",
                "name",
                uplink.laptop_if,
                "netns",
                ns,
            ])?;
            ip(&[
                "addr",
                "add",
                &format!("{}/24", uplink.gateway),
                "dev",
                &uplink.root_if,
            ])?;
            ip(&["link", "set", &uplink.root_if, "up"])?;
        }
        self.join(&self.wifi)
    }

    /// Brings `uplink` up on the laptop with its address and the default
    /// route through it.
    fn join(&self, uplink: &Uplink) -> Result<(), String> {
        let ns = self.name.as_str();
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/24", uplink.address),
            "dev",
            uplink.laptop_if,
        ])?;
        ip(&["-n", ns, "link", "set", uplink.laptop_if, "up"])?;
        ip(&[
            "-n",
            ns,
            "route",
            "replace",
            "default",
            "via",
            &uplink.gateway,
        ])
    }

    /// Wi‑Fi is lost (its link goes down and its address away), then the
    /// laptop joins the hotspot (link up, a new address, the default route
    /// through it): the source address towards the relay changes. Nothing
    /// tells the agent.
    pub fn switch_to_hotspot(&self) {
        let ns = self.name.as_str();
        let step = ip(&["-n", ns, "link", "set", self.wifi.laptop_if, "down"])
            .and_then(|()| ip(&["-n", ns, "addr", "flush", "dev", self.wifi.laptop_if]))
            .and_then(|()| self.join(&self.hotspot));
        if let Err(e) = step {
            panic!("cannot switch the laptop to the hotspot: {e}");
        }
    }

    /// The command prefix that runs a program inside the laptop.
    pub fn exec_prefix(&self) -> Vec<String> {
        ["ip", "netns", "exec", self.name.as_str()]
            .map(str::to_owned)
            .to_vec()
    }

    /// The relay's address (on the root namespace's `lo`), for it to
    /// listen on.
    pub fn relay_ip(&self) -> &str {
        &self.relay_ip
    }

    /// The laptop's address on Wi‑Fi.
    pub fn wifi_address(&self) -> &str {
        &self.wifi.address
    }

    /// The laptop's address on the hotspot.
    pub fn hotspot_address(&self) -> &str {
        &self.hotspot.address
    }
}

impl Drop for Laptop {
    fn drop(&mut self) {
        // Deleting the namespace deletes the laptop's veth ends, and with
        // them their root-side peers; the explicit deletes cover a
        // namespace a process still holds. Errors are for what was never
        // made.
        let _ = ip(&["netns", "del", &self.name]);
        for uplink in [&self.wifi, &self.hotspot] {
            let _ = ip(&["link", "del", &uplink.root_if]);
        }
        let _ = ip(&["addr", "del", &format!("{}/32", self.relay_ip), "dev", "lo"]);
    }
}
