//! The local dev keyring: named accounts (alice, bob, ...) and contract labels,
//! kept as `keyring.json` in the data directory. Dev accounts have no keys:
//! their addresses are derived from their names (`chroma_vm::dev_account`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use chroma_host_api::Address;
use chroma_vm::dev_account;
use serde::{Deserialize, Serialize};

pub const KEYRING_FILE: &str = "keyring.json";
pub const DEFAULT_ACCOUNTS: [&str; 5] = ["alice", "bob", "carol", "dave", "eve"];

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Keyring {
    pub accounts: Vec<String>,
    /// label -> address (hex)
    pub contracts: BTreeMap<String, String>,
    #[serde(skip)]
    path: PathBuf,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.starts_with("0x")
}

impl Keyring {
    pub fn create(dir: &Path) -> anyhow::Result<Keyring> {
        let keyring = Keyring {
            accounts: DEFAULT_ACCOUNTS.iter().map(|s| s.to_string()).collect(),
            contracts: BTreeMap::new(),
            path: dir.join(KEYRING_FILE),
        };
        keyring.save()?;
        Ok(keyring)
    }

    pub fn load(dir: &Path) -> anyhow::Result<Keyring> {
        let path = dir.join(KEYRING_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read the keyring {}", path.display()))?;
        let mut keyring: Keyring =
            serde_json::from_str(&text).with_context(|| format!("the keyring {} is corrupted", path.display()))?;
        keyring.path = path;
        Ok(keyring)
    }

    /// Writes the keyring atomically (a temporary file, then a rename).
    pub fn save(&self) -> anyhow::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path).with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(())
    }

    pub fn add_account(&mut self, name: &str) -> anyhow::Result<Address> {
        if !valid_name(name) {
            bail!("account names are 1 to 32 letters, digits, '-' or '_' (not starting with 0x)");
        }
        if self.accounts.iter().any(|a| a == name) || self.contracts.contains_key(name) {
            bail!("the name {name:?} is already in the keyring");
        }
        self.accounts.push(name.to_string());
        self.save()?;
        Ok(dev_account(name))
    }

    pub fn add_contract(&mut self, label: &str, address: Address) -> anyhow::Result<()> {
        if !valid_name(label) {
            bail!("contract labels are 1 to 32 letters, digits, '-' or '_' (not starting with 0x)");
        }
        if self.accounts.iter().any(|a| a == label) || self.contracts.contains_key(label) {
            bail!("the name {label:?} is already in the keyring; choose another --name");
        }
        self.contracts.insert(label.to_string(), address.to_string());
        self.save()
    }

    /// The sender account `name`.
    pub fn account(&self, name: &str) -> anyhow::Result<Address> {
        if self.accounts.iter().any(|a| a == name) {
            return Ok(dev_account(name));
        }
        bail!("unknown account {name:?}; known accounts: {} (add one with `chroma account new {name}`)", self.accounts.join(", "))
    }

    /// An account name, a contract label, or a hex address.
    pub fn resolve(&self, name: &str) -> Option<Address> {
        if let Some(address) = Address::from_hex(name) {
            return Some(address);
        }
        if self.accounts.iter().any(|a| a == name) {
            return Some(dev_account(name));
        }
        self.contracts.get(name).and_then(|hex| Address::from_hex(hex))
    }

    /// The name of an address, if it has one.
    pub fn name_of(&self, address: &Address) -> Option<String> {
        if let Some(name) = self.accounts.iter().find(|a| dev_account(a) == *address) {
            return Some(name.clone());
        }
        let hex = address.to_string();
        self.contracts.iter().find(|(_, a)| **a == hex).map(|(label, _)| label.clone())
    }
}
