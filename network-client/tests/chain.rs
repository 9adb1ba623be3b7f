//! The on-chain reads against a real local chain, and the gateway's key sources.
//!
//! Each chain test starts its own anvil (npm `@foundry-rs/anvil-linux-amd64`) and deploys stand-ins for the Livepeer
//! contracts (`tests/chain/contracts/*.sol`, compiled once per run with solcjs) that have the same function
//! signatures as the real ones, so the client's calls are the ones it makes on Arbitrum One. `scripts/test-deps`
//! installs both tools (`npm ci` in `tests/chain`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use alloy::contract::{CallBuilder, CallDecoder};
use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, Bytes, U256, address, keccak256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::SolValue;
use studio_network_client::chain::{
    ChainClient, ChainConfig, ChainError, FundingError, PoolOrchestrator, ProtocolContracts,
    SenderInfo,
};
use studio_network_client::keystore::{KeyError, KeySource, MAX_KEYSTORE_BYTES, SecretString};
use url::Url;

const HARDHAT_0_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const HARDHAT_0: Address = address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");

sol! {
    #[sol(rpc)]
    interface TestController {
        function setContract(bytes32 _id, address _contract) external;
    }

    #[sol(rpc)]
    interface TestBondingManager {
        function addTranscoder(address _transcoder, uint256 _totalStake, bool _active) external;
        function setNextTranscoder(address _transcoder, address _next) external;
    }

    #[sol(rpc)]
    interface TestServiceRegistry {
        function setServiceURI(string _serviceURI) external;
    }

    #[sol(rpc)]
    interface TestTicketBroker {
        function fundDepositAndReserve(uint256 _depositAmount, uint256 _reserveAmount) external payable;
        function unlock() external;
    }

    #[sol(rpc)]
    interface TestRoundsManager {
        function setCurrentRound(uint256 _round) external;
    }
}

// ------------------------------------------------------------------------------------------- test peers

fn chain_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chain")
}

fn missing(what: &Path) -> String {
    format!(
        "{} is missing: run scripts/test-deps (it runs npm ci in network-client/tests/chain)",
        what.display()
    )
}

/// A real anvil on a port of its choosing, killed on drop.
struct Anvil {
    child: Child,
    url: Url,
}

impl Anvil {
    fn start() -> Self {
        // The Linux x86-64 binary package, which is what tests/chain/package.json installs.
        let bin = chain_dir().join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
        assert!(bin.exists(), "{}", missing(&bin));
        let mut child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let address = loop {
            line.clear();
            let n = stdout.read_line(&mut line).expect("reading anvil's stdout");
            assert!(n > 0, "anvil exited before it listened");
            if let Some(address) = line.trim().strip_prefix("Listening on ") {
                break address.to_owned();
            }
        };
        // anvil logs every request; a full pipe would stall it.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Self {
            child,
            url: Url::parse(&format!("http://{address}")).expect("anvil's address"),
        }
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creation bytecode of each stand-in contract, by contract name; compiled once per test run.
fn bytecodes() -> &'static HashMap<String, Bytes> {
    static BYTECODES: OnceLock<HashMap<String, Bytes>> = OnceLock::new();
    BYTECODES.get_or_init(compile_contracts)
}

fn compile_contracts() -> HashMap<String, Bytes> {
    let dir = chain_dir();
    let solc = dir.join("node_modules/solc");
    assert!(solc.exists(), "{}", missing(&solc));
    let mut sources = serde_json::Map::new();
    for entry in std::fs::read_dir(dir.join("contracts")).expect("tests/chain/contracts") {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let content = std::fs::read_to_string(&path).expect("reading a contract");
        sources.insert(name, serde_json::json!({ "content": content }));
    }
    let input = serde_json::json!({
        "language": "Solidity",
        "sources": sources,
        "settings": {
            "evmVersion": "cancun",
            "outputSelection": { "*": { "*": ["evm.bytecode.object"] } }
        }
    });
    // solcjs's JS API on standard JSON; its CLI prints a banner before the JSON.
    let mut node = Command::new("node")
        .current_dir(&dir)
        .args([
            "-e",
            "process.stdout.write(require('solc').compile(require('fs').readFileSync(0, 'utf8')))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running node (scripts/test-deps installs nodejs)");
    node.stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let mut out = String::new();
    node.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(node.wait().unwrap().success(), "solcjs failed");
    let output: serde_json::Value =
        serde_json::from_str(&out).expect("solc's standard JSON output");
    let errors: Vec<_> = output["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["severity"] == "error")
        .map(|e| {
            e["formattedMessage"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(errors.is_empty(), "solc: {}", errors.join("\n"));
    let mut bytecodes = HashMap::new();
    for contracts in output["contracts"].as_object().expect("contracts").values() {
        for (name, contract) in contracts.as_object().unwrap() {
            let object = contract["evm"]["bytecode"]["object"].as_str().unwrap();
            bytecodes.insert(name.clone(), object.parse().expect("hex bytecode"));
        }
    }
    bytecodes
}

/// The stand-in protocol on a fresh chain, deployed by dev account 0. The other dev accounts play
/// orchestrators and senders.
struct Protocol {
    anvil: Anvil,
    provider: DynProvider,
    accounts: Vec<Address>,
    contracts: ProtocolContracts,
}

impl Protocol {
    /// Deploys every contract and registers those named in `register` with the Controller.
    async fn deploy(register: &[&str]) -> Self {
        let anvil = Anvil::start();
        let provider = ProviderBuilder::new()
            .connect_http(anvil.url.clone())
            .erased();
        let accounts = provider.get_accounts().await.expect("eth_accounts");
        let deployer = accounts[0];
        let deploy = async |name: &str, args: Vec<u8>| {
            let mut code = bytecodes()[name].to_vec();
            code.extend(args);
            let tx = TransactionRequest::default()
                .from(deployer)
                .with_deploy_code(code);
            let receipt = provider
                .send_transaction(tx)
                .await
                .unwrap()
                .get_receipt()
                .await
                .unwrap();
            assert!(receipt.status(), "deploying {name} failed");
            receipt.contract_address.expect("a deployed address")
        };
        let controller = deploy("Controller", Vec::new()).await;
        let contracts = ProtocolContracts {
            controller,
            bonding_manager: deploy("BondingManager", Vec::new()).await,
            service_registry: deploy("ServiceRegistry", Vec::new()).await,
            ticket_broker: deploy("TicketBroker", controller.abi_encode()).await,
            rounds_manager: deploy("RoundsManager", Vec::new()).await,
        };
        let registry = TestController::new(controller, provider.clone());
        for (name, address) in [
            ("BondingManager", contracts.bonding_manager),
            ("ServiceRegistry", contracts.service_registry),
            ("TicketBroker", contracts.ticket_broker),
            ("RoundsManager", contracts.rounds_manager),
        ] {
            if register.contains(&name) {
                confirm(
                    registry
                        .setContract(keccak256(name), address)
                        .from(deployer),
                )
                .await;
            }
        }
        Self {
            anvil,
            provider,
            accounts,
            contracts,
        }
    }

    async fn full() -> Self {
        Self::deploy(&[
            "BondingManager",
            "ServiceRegistry",
            "TicketBroker",
            "RoundsManager",
        ])
        .await
    }

    fn config(&self) -> ChainConfig {
        ChainConfig {
            controller: self.contracts.controller,
            ..ChainConfig::new(self.anvil.url.clone())
        }
    }

    async fn client(&self) -> ChainClient {
        ChainClient::connect(self.config()).await.expect("connect")
    }

    async fn set_round(&self, round: u64) {
        let rounds = TestRoundsManager::new(self.contracts.rounds_manager, self.provider.clone());
        confirm(
            rounds
                .setCurrentRound(U256::from(round))
                .from(self.accounts[0]),
        )
        .await;
    }
}

/// Sends a transaction and checks that it succeeded.
async fn confirm<P: Provider, D: CallDecoder>(call: CallBuilder<P, D>) {
    let receipt = call
        .send()
        .await
        .expect("send")
        .get_receipt()
        .await
        .expect("receipt");
    assert!(receipt.status(), "transaction reverted");
}

fn milli_eth(milli: u64) -> U256 {
    U256::from(milli) * U256::from(10u64).pow(U256::from(15))
}

// ------------------------------------------------------------------------------------------- chain

#[tokio::test]
async fn contracts_resolve_through_the_controller() {
    let protocol = Protocol::full().await;
    let client = protocol.client().await;
    assert_eq!(*client.contracts(), protocol.contracts);
    assert_eq!(client.current_round().await.unwrap(), U256::ZERO);
    protocol.set_round(4242).await;
    assert_eq!(client.current_round().await.unwrap(), U256::from(4242));
}

#[tokio::test]
async fn a_controller_without_a_bonding_manager_is_a_clear_error() {
    let protocol = Protocol::deploy(&["ServiceRegistry", "TicketBroker", "RoundsManager"]).await;
    let err = ChainClient::connect(protocol.config()).await.unwrap_err();
    assert!(
        matches!(err, ChainError::NotRegistered { name: "BondingManager", controller } if controller == protocol.contracts.controller),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("no BondingManager registered"),
        "{err}"
    );

    // An address with no contract, e.g. the Arbitrum One Controller on a local chain.
    let err = ChainClient::connect(ChainConfig::new(protocol.anvil.url.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::NoController { .. }), "{err:?}");
}

#[tokio::test]
async fn discovery_reads_the_pool_in_order() {
    let protocol = Protocol::full().await;
    let provider = &protocol.provider;
    let bonding = TestBondingManager::new(protocol.contracts.bonding_manager, provider);
    let registry = TestServiceRegistry::new(protocol.contracts.service_registry, provider);
    let (a, b, c, outsider) = (
        protocol.accounts[1],
        protocol.accounts[2],
        protocol.accounts[3],
        protocol.accounts[4],
    );
    let want = vec![
        PoolOrchestrator {
            address: a,
            service_uri: "https://10.0.0.1:8935".into(),
            active: true,
            total_stake: milli_eth(300_000),
        },
        PoolOrchestrator {
            address: b,
            service_uri: "https://orch-b.example.com:8935".into(),
            active: true,
            total_stake: milli_eth(200_000),
        },
        PoolOrchestrator {
            address: c,
            service_uri: String::new(),
            active: false,
            total_stake: milli_eth(1),
        },
    ];
    for o in &want {
        confirm(
            bonding
                .addTranscoder(o.address, o.total_stake, o.active)
                .from(protocol.accounts[0]),
        )
        .await;
        if !o.service_uri.is_empty() {
            // Each orchestrator publishes its own URI.
            confirm(
                registry
                    .setServiceURI(o.service_uri.clone())
                    .from(o.address),
            )
            .await;
        }
    }
    // Registered in the ServiceRegistry but not bonded: not in the pool, so not discovered.
    confirm(
        registry
            .setServiceURI("https://outsider:8935".into())
            .from(outsider),
    )
    .await;

    let client = protocol.client().await;
    assert_eq!(client.orchestrator_pool(100).await.unwrap(), want);
    assert_eq!(client.orchestrator_pool(3).await.unwrap(), want);
    assert_eq!(client.orchestrator_pool(2).await.unwrap(), want[..2]);
    assert_eq!(client.orchestrator_pool(0).await.unwrap(), []);

    // A pool that loops (c → a) is bad chain data: an error, not an endless walk.
    confirm(bonding.setNextTranscoder(c, a).from(protocol.accounts[0])).await;
    let err = client.orchestrator_pool(100).await.unwrap_err();
    assert!(
        matches!(err, ChainError::PoolCycle { address } if address == a),
        "{err:?}"
    );
    // Bounded by max, the loop is never reached.
    assert_eq!(client.orchestrator_pool(3).await.unwrap(), want);
}

#[tokio::test]
async fn an_empty_pool_is_empty() {
    let protocol = Protocol::full().await;
    assert_eq!(
        protocol
            .client()
            .await
            .orchestrator_pool(100)
            .await
            .unwrap(),
        []
    );
}

#[tokio::test]
async fn sender_funds_read_back_and_each_shortfall_is_named() {
    let protocol = Protocol::full().await;
    let client = protocol.client().await;
    let broker = TestTicketBroker::new(protocol.contracts.ticket_broker, &protocol.provider);
    protocol.set_round(10).await;
    let round = client.current_round().await.unwrap();
    assert_eq!(round, U256::from(10));

    // The gateway's own key: Hardhat's account 0, which is anvil's first dev account too. Never funded.
    let sender = KeySource::PrivateKey(HARDHAT_0_KEY.into())
        .load()
        .unwrap()
        .address();
    assert_eq!(sender, protocol.accounts[0]);
    let info = client.sender_info(sender).await.unwrap();
    assert_eq!(info, SenderInfo::default());
    let err = info.check_funded(round).unwrap_err();
    assert_eq!(err, FundingError::Unfunded);
    assert!(err.to_string().contains("fundDepositAndReserve"), "{err}");

    // Funded from the gateway's account: both amounts read back exactly.
    let (deposit, reserve) = (milli_eth(1_234), milli_eth(5_678) + U256::from(9));
    confirm(
        broker
            .fundDepositAndReserve(deposit, reserve)
            .value(deposit + reserve)
            .from(sender),
    )
    .await;
    let info = client.sender_info(sender).await.unwrap();
    assert_eq!(
        info,
        SenderInfo {
            deposit,
            withdraw_round: U256::ZERO,
            reserve,
            claimed_in_current_round: U256::ZERO,
        }
    );
    assert_eq!(info.check_funded(round), Ok(()));

    // unlock() sets the withdraw round two rounds ahead.
    confirm(broker.unlock().from(sender)).await;
    let info = client.sender_info(sender).await.unwrap();
    assert_eq!(
        info.check_funded(round),
        Err(FundingError::UnlockPending {
            withdraw_round: U256::from(12),
            current_round: round
        })
    );
    protocol.set_round(12).await;
    let round = client.current_round().await.unwrap();
    assert_eq!(
        info.check_funded(round),
        Err(FundingError::Unlocked {
            withdraw_round: U256::from(12),
            current_round: round
        })
    );
    // Funding again cancels the unlock.
    confirm(
        broker
            .fundDepositAndReserve(U256::ZERO, U256::from(1))
            .value(U256::from(1))
            .from(sender),
    )
    .await;
    let info = client.sender_info(sender).await.unwrap();
    assert_eq!(
        (info.withdraw_round, info.reserve),
        (U256::ZERO, reserve + U256::from(1))
    );
    assert_eq!(info.check_funded(round), Ok(()));

    // A reserve alone, a deposit alone.
    let reserve_only = protocol.accounts[6];
    confirm(
        broker
            .fundDepositAndReserve(U256::ZERO, milli_eth(1))
            .value(milli_eth(1))
            .from(reserve_only),
    )
    .await;
    assert_eq!(
        client
            .sender_info(reserve_only)
            .await
            .unwrap()
            .check_funded(round),
        Err(FundingError::NoDeposit {
            reserve: milli_eth(1)
        })
    );
    let deposit_only = protocol.accounts[7];
    confirm(
        broker
            .fundDepositAndReserve(milli_eth(2), U256::ZERO)
            .value(milli_eth(2))
            .from(deposit_only),
    )
    .await;
    assert_eq!(
        client
            .sender_info(deposit_only)
            .await
            .unwrap()
            .check_funded(round),
        Err(FundingError::NoReserve {
            deposit: milli_eth(2)
        })
    );
}

#[tokio::test]
async fn a_dead_rpc_endpoint_is_an_error_within_the_timeout() {
    let timeout = Duration::from_millis(500);

    // Accepts connections (the kernel does) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = Url::parse(&format!(
        "http://{}/v2/SECRETKEY",
        silent.local_addr().unwrap()
    ))
    .unwrap();
    let started = Instant::now();
    let err = ChainClient::connect(ChainConfig {
        rpc_timeout: timeout,
        ..ChainConfig::new(url)
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, ChainError::Timeout { after, .. } if after == timeout),
        "{err:?}"
    );
    assert!(
        started.elapsed() < timeout * 4,
        "took {:?}",
        started.elapsed()
    );

    // Nothing listening: refused at once, and the API key in the URL is not in the message.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = Url::parse(&format!("http://127.0.0.1:{port}/v2/SECRETKEY")).unwrap();
    let started = Instant::now();
    let err = ChainClient::connect(ChainConfig {
        rpc_timeout: timeout,
        ..ChainConfig::new(url)
    })
    .await
    .unwrap_err();
    assert!(matches!(err, ChainError::Rpc { .. }), "{err:?}");
    assert!(started.elapsed() < timeout, "took {:?}", started.elapsed());
    let text = format!("{err} {err:?}");
    assert!(!text.contains("SECRETKEY"), "{text}");
    drop(silent);
}

// ------------------------------------------------------------------------------------------- keys

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("studio-keystore-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{secret:?} leaked into {text:?}");
    }
}

#[test]
fn a_keystore_file_loads_and_keeps_its_secrets() {
    let dir = TempDir::new();
    let password = "correct horse battery staple";
    let key = alloy::hex::decode(HARDHAT_0_KEY).unwrap();
    PrivateKeySigner::encrypt_keystore(
        &dir.0,
        &mut rand::thread_rng(),
        &key,
        password,
        Some("gateway.json"),
    )
    .unwrap();
    let path = dir.0.join("gateway.json");

    let source = KeySource::KeystoreFile {
        path: path.clone(),
        password: password.into(),
    };
    assert_eq!(source.load().unwrap().address(), HARDHAT_0);
    let printed = format!("{source:?} {source:#?}");
    assert!(printed.contains("gateway.json"), "{printed}");
    assert_no_secret(&printed, &[password, "correct horse"]);

    let wrong = "Tr0ub4dor&3";
    let err = KeySource::KeystoreFile {
        path: path.clone(),
        password: wrong.into(),
    }
    .load()
    .unwrap_err();
    assert!(matches!(err, KeyError::WrongPassword { .. }), "{err:?}");
    assert_no_secret(
        &format!("{err} {err:?}"),
        &[wrong, password, HARDHAT_0_KEY, &HARDHAT_0_KEY[..16]],
    );
}

#[test]
fn a_raw_private_key_loads_and_bad_ones_are_not_echoed() {
    for given in [HARDHAT_0_KEY.to_owned(), format!("  0x{HARDHAT_0_KEY}\n")] {
        let source = KeySource::PrivateKey(SecretString::new(given));
        assert_eq!(source.load().unwrap().address(), HARDHAT_0);
        assert_no_secret(
            &format!("{source:?} {source:#?}"),
            &[HARDHAT_0_KEY, &HARDHAT_0_KEY[..16]],
        );
    }
    let short = &HARDHAT_0_KEY[..62];
    let not_hex = format!("{}zz", &HARDHAT_0_KEY[..62]);
    let zero = "0".repeat(64);
    for bad in [short, not_hex.as_str(), zero.as_str(), ""] {
        let err = KeySource::PrivateKey(bad.into()).load().unwrap_err();
        assert!(matches!(err, KeyError::InvalidPrivateKey), "{err:?}");
        if !bad.is_empty() {
            assert_no_secret(&format!("{err} {err:?}"), &[&bad[..16]]);
        }
    }
}

#[test]
fn unusable_keystore_files_are_refused_before_decryption() {
    let dir = TempDir::new();
    let load = |name: &str, contents: &[u8]| {
        let path = dir.0.join(name);
        std::fs::write(&path, contents).unwrap();
        KeySource::KeystoreFile {
            path,
            password: "pw".into(),
        }
        .load()
        .unwrap_err()
    };

    // A raw key put where the keystore should be: refused, and not quoted.
    for contents in [HARDHAT_0_KEY.to_owned(), format!("\"{HARDHAT_0_KEY}\"")] {
        let err = load("raw.json", contents.as_bytes());
        assert!(matches!(err, KeyError::InvalidKeystore { .. }), "{err:?}");
        assert_no_secret(&format!("{err} {err:?}"), &[&HARDHAT_0_KEY[..16]]);
    }

    let too_large = vec![b' '; MAX_KEYSTORE_BYTES as usize + 1];
    assert!(matches!(
        load("large.json", &too_large),
        KeyError::TooLarge { .. }
    ));

    let keystore = |n: u64, iv: &str| {
        serde_json::json!({
            "version": 3,
            "id": "00000000-0000-4000-8000-000000000001",
            "crypto": {
                "cipher": "aes-128-ctr",
                "cipherparams": { "iv": iv },
                "ciphertext": "11".repeat(32),
                "kdf": "scrypt",
                "kdfparams": {
                    "dklen": 32, "n": n, "p": 1, "r": 8,
                    "salt": "33".repeat(32)
                },
                "mac": "22".repeat(32)
            }
        })
        .to_string()
    };
    // A memory bomb (scrypt with n = 2^22, r = 8: 4 GiB) and a short IV (which would panic inside the
    // decryption).
    for (name, contents) in [
        (
            "bomb.json",
            keystore(1 << 22, "00112233445566778899aabbccddeeff"),
        ),
        ("short-iv.json", keystore(1 << 12, "0011")),
    ] {
        let started = Instant::now();
        let err = load(name, contents.as_bytes());
        assert!(
            matches!(err, KeyError::InvalidKeystore { .. }),
            "{name}: {err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(1), "{name}");
    }
    // A well-formed keystore with a MAC that no password matches.
    let err = load(
        "real.json",
        keystore(1 << 12, "00112233445566778899aabbccddeeff").as_bytes(),
    );
    assert!(matches!(err, KeyError::WrongPassword { .. }), "{err:?}");

    let err = KeySource::KeystoreFile {
        path: dir.0.clone(),
        password: "pw".into(),
    }
    .load()
    .unwrap_err();
    assert!(matches!(err, KeyError::NotAFile { .. }), "{err:?}");
    let err = KeySource::KeystoreFile {
        path: dir.0.join("absent.json"),
        password: "pw".into(),
    }
    .load()
    .unwrap_err();
    assert!(matches!(err, KeyError::Read { .. }), "{err:?}");
}
