//! Reads of the Livepeer protocol contracts on Arbitrum One, over a configurable JSON-RPC endpoint.
//!
//! The gateway never writes to the chain (orchestrators redeem winning tickets, §4.6). It reads three things:
//!
//! - **The orchestrator pool** (§3.1): the BondingManager's transcoder pool walked from
//!   `getFirstTranscoderInPool()` through `getNextTranscoderInPool(addr)`, with each orchestrator's active flag,
//!   total stake and `ServiceRegistry.getServiceURI(addr)`. This is go-livepeer's on-chain discovery. The stake is
//!   read for stake-weighted selection, the active flag to skip orchestrators outside the current active set.
//! - **The gateway's own funds** (§4.4): `TicketBroker.getSenderInfo(gateway)`, checked with
//!   [`SenderInfo::check_funded`] against `RoundsManager.currentRound()`. Tickets from a gateway without a deposit
//!   and a reserve are worth nothing, and unlocking funds may be gone before a ticket is redeemed, so the check
//!   belongs at start-up, with the deposit and reserve reported there and in metrics.
//! - **The contract addresses**, which are not configured: like go-livepeer, only the Controller is, and every
//!   other address is `Controller.getContract(keccak256(name))`. A protocol upgrade that moves a contract is
//!   followed on the next [`ChainClient::connect`].
//!
//! Every JSON-RPC call is bounded by [`ChainConfig::rpc_timeout`] (the caller's tokio runtime needs its timer),
//! so a dead endpoint is an error, not a hang. RPC URLs often carry an API key in the path or query; errors and
//! `Debug` show only the URL's origin.

mod contracts;
mod funding;

use std::collections::HashSet;
use std::fmt;
use std::future::IntoFuture;
use std::time::Duration;

use alloy::primitives::{Address, U256, address};
use alloy::providers::{Provider, RootProvider};
use futures_util::{StreamExt, TryStreamExt, stream};
use url::Url;

use contracts::{
    BondingManager, Controller, RoundsManager, ServiceRegistry, TicketBroker, contract_id,
};
pub use funding::{FundingError, SenderInfo};

/// The Livepeer Controller proxy on Arbitrum One (`livepeer/protocol` `deployments/arbitrumMainnet`).
pub const ARBITRUM_ONE_CONTROLLER: Address = address!("D8E8328501E9645d16Cf49539efC04f734606ee4");

/// How long one JSON-RPC call may take by default.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// How many orchestrators' details (active flag, stake, service URI) are read at once during a pool walk.
const POOL_READ_CONCURRENCY: usize = 8;

/// Where and how to read the chain.
#[derive(Clone)]
pub struct ChainConfig {
    /// The JSON-RPC endpoint (HTTP or HTTPS) of an Arbitrum One node.
    pub rpc_url: Url,
    /// The Livepeer Controller, from which the other contract addresses are resolved.
    pub controller: Address,
    /// The limit on each JSON-RPC call.
    pub rpc_timeout: Duration,
}

impl ChainConfig {
    /// Arbitrum One's Controller and the default timeout, read through `rpc_url`.
    pub fn new(rpc_url: Url) -> Self {
        Self {
            rpc_url,
            controller: ARBITRUM_ONE_CONTROLLER,
            rpc_timeout: DEFAULT_RPC_TIMEOUT,
        }
    }
}

impl fmt::Debug for ChainConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainConfig")
            .field("rpc_url", &redacted(&self.rpc_url))
            .field("controller", &format_args!("{}", self.controller))
            .field("rpc_timeout", &self.rpc_timeout)
            .finish()
    }
}

/// Why a chain read failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The endpoint did not answer within [`ChainConfig::rpc_timeout`].
    #[error("JSON-RPC call {call} timed out after {after:?}")]
    Timeout {
        /// The contract function or RPC method.
        call: String,
        /// The limit that was reached.
        after: Duration,
    },
    /// The call failed: transport error, error response, revert, or a result that does not decode.
    #[error("JSON-RPC call {call} failed: {message}")]
    Rpc {
        /// The contract function or RPC method.
        call: String,
        /// What went wrong, with the RPC URL reduced to its origin.
        message: String,
    },
    /// There is no contract at the configured Controller address on this chain: the wrong network, or the
    /// wrong address.
    #[error(
        "no contract code at the Controller address {address} on this chain (is the RPC URL for the right \
         network, and is the controller address right?)"
    )]
    NoController {
        /// The configured Controller address.
        address: Address,
    },
    /// The Controller has no address for a protocol contract.
    #[error(
        "the Controller at {controller} has no {name} registered (getContract returned the zero address)"
    )]
    NotRegistered {
        /// The contract's name, as hashed for `getContract`.
        name: &'static str,
        /// The Controller asked.
        controller: Address,
    },
    /// The transcoder pool is a linked list that must end in the zero address; this one came back to an
    /// orchestrator already seen.
    #[error("the BondingManager transcoder pool loops back to {address}")]
    PoolCycle {
        /// The orchestrator seen twice.
        address: Address,
    },
}

/// The protocol contracts the gateway reads, as resolved through the Controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolContracts {
    /// The Controller (configured).
    pub controller: Address,
    /// Stake and the transcoder pool.
    pub bonding_manager: Address,
    /// Orchestrators' service URIs.
    pub service_registry: Address,
    /// Deposits, reserves and ticket redemption.
    pub ticket_broker: Address,
    /// Rounds.
    pub rounds_manager: Address,
}

/// One orchestrator of the BondingManager's transcoder pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolOrchestrator {
    /// The orchestrator's on-chain address (its stake and the ticket recipient).
    pub address: Address,
    /// What it published in the ServiceRegistry, unchecked: normally `https://host:port`, possibly empty.
    pub service_uri: String,
    /// Whether it is in the active set of the current round.
    pub active: bool,
    /// Its own and its delegators' bonded stake, in LPT wei.
    pub total_stake: U256,
}

/// The timeout and the redaction applied to every call.
#[derive(Clone)]
struct CallPolicy {
    timeout: Duration,
    url: String,
    redacted_url: String,
}

impl CallPolicy {
    async fn run<T, E: fmt::Display>(
        &self,
        call: &str,
        request: impl IntoFuture<Output = Result<T, E>>,
    ) -> Result<T, ChainError> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(ChainError::Rpc {
                call: call.to_owned(),
                message: e.to_string().replace(&self.url, &self.redacted_url),
            }),
            Err(_) => Err(ChainError::Timeout {
                call: call.to_owned(),
                after: self.timeout,
            }),
        }
    }
}

/// A read-only client of the Livepeer protocol contracts.
#[derive(Clone)]
pub struct ChainClient {
    policy: CallPolicy,
    contracts: ProtocolContracts,
    bonding_manager: BondingManager::BondingManagerInstance<RootProvider>,
    service_registry: ServiceRegistry::ServiceRegistryInstance<RootProvider>,
    ticket_broker: TicketBroker::TicketBrokerInstance<RootProvider>,
    rounds_manager: RoundsManager::RoundsManagerInstance<RootProvider>,
}

impl fmt::Debug for ChainClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainClient")
            .field("rpc_url", &self.policy.redacted_url)
            .field("contracts", &self.contracts)
            .finish_non_exhaustive()
    }
}

impl ChainClient {
    /// Checks that the Controller exists on the endpoint's chain and resolves the other contracts through it.
    pub async fn connect(config: ChainConfig) -> Result<Self, ChainError> {
        let policy = CallPolicy {
            timeout: config.rpc_timeout,
            url: config.rpc_url.as_str().to_owned(),
            redacted_url: redacted(&config.rpc_url),
        };
        let provider = RootProvider::new_http(config.rpc_url);

        let code = policy
            .run(
                "eth_getCode(Controller)",
                provider.get_code_at(config.controller),
            )
            .await?;
        if code.is_empty() {
            return Err(ChainError::NoController {
                address: config.controller,
            });
        }

        let controller = Controller::new(config.controller, provider.clone());
        let resolve = |name: &'static str| {
            let (controller, policy) = (&controller, &policy);
            async move {
                let call = controller.getContract(contract_id(name));
                let resolved = policy
                    .run(&format!("Controller.getContract({name})"), call.call())
                    .await?;
                if resolved.is_zero() {
                    return Err(ChainError::NotRegistered {
                        name,
                        controller: *controller.address(),
                    });
                }
                Ok(resolved)
            }
        };
        let (bonding_manager, service_registry, ticket_broker, rounds_manager) = tokio::try_join!(
            resolve("BondingManager"),
            resolve("ServiceRegistry"),
            resolve("TicketBroker"),
            resolve("RoundsManager"),
        )?;

        Ok(Self {
            contracts: ProtocolContracts {
                controller: config.controller,
                bonding_manager,
                service_registry,
                ticket_broker,
                rounds_manager,
            },
            bonding_manager: BondingManager::new(bonding_manager, provider.clone()),
            service_registry: ServiceRegistry::new(service_registry, provider.clone()),
            ticket_broker: TicketBroker::new(ticket_broker, provider.clone()),
            rounds_manager: RoundsManager::new(rounds_manager, provider),
            policy,
        })
    }

    /// The contract addresses resolved at [`connect`](Self::connect).
    pub fn contracts(&self) -> &ProtocolContracts {
        &self.contracts
    }

    /// The current protocol round (`RoundsManager.currentRound()`).
    pub async fn current_round(&self) -> Result<U256, ChainError> {
        let call = self.rounds_manager.currentRound();
        self.policy
            .run("RoundsManager.currentRound", call.call())
            .await
    }

    /// A sender's deposit and reserve (`TicketBroker.getSenderInfo(sender)`).
    pub async fn sender_info(&self, sender: Address) -> Result<SenderInfo, ChainError> {
        let call = self.ticket_broker.getSenderInfo(sender);
        let info = self
            .policy
            .run("TicketBroker.getSenderInfo", call.call())
            .await?;
        Ok(SenderInfo {
            deposit: info.sender.deposit,
            withdraw_round: info.sender.withdrawRound,
            reserve: info.reserve.fundsRemaining,
            claimed_in_current_round: info.reserve.claimedInCurrentRound,
        })
    }

    /// The first `max` orchestrators of the transcoder pool, in pool order (descending stake on the real
    /// BondingManager), each with its active flag, total stake and service URI.
    pub async fn orchestrator_pool(&self, max: usize) -> Result<Vec<PoolOrchestrator>, ChainError> {
        let mut addresses = Vec::new();
        if max > 0 {
            let first = self.bonding_manager.getFirstTranscoderInPool();
            let mut current = self
                .policy
                .run("BondingManager.getFirstTranscoderInPool", first.call())
                .await?;
            let mut seen = HashSet::new();
            while !current.is_zero() {
                if !seen.insert(current) {
                    return Err(ChainError::PoolCycle { address: current });
                }
                addresses.push(current);
                if addresses.len() == max {
                    break;
                }
                let next = self.bonding_manager.getNextTranscoderInPool(current);
                current = self
                    .policy
                    .run("BondingManager.getNextTranscoderInPool", next.call())
                    .await?;
            }
        }
        stream::iter(addresses)
            .map(|address| self.pool_orchestrator(address))
            .buffered(POOL_READ_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn pool_orchestrator(&self, address: Address) -> Result<PoolOrchestrator, ChainError> {
        let active = self.bonding_manager.isActiveTranscoder(address);
        let stake = self.bonding_manager.transcoderTotalStake(address);
        let uri = self.service_registry.getServiceURI(address);
        let (active, total_stake, service_uri) = tokio::try_join!(
            self.policy
                .run("BondingManager.isActiveTranscoder", active.call()),
            self.policy
                .run("BondingManager.transcoderTotalStake", stake.call()),
            self.policy.run("ServiceRegistry.getServiceURI", uri.call()),
        )?;
        Ok(PoolOrchestrator {
            address,
            service_uri,
            active,
            total_stake,
        })
    }
}

/// The URL without credentials, path or query, which is where RPC providers put API keys.
fn redacted(url: &Url) -> String {
    let origin = url.origin().ascii_serialization();
    if url.path() == "/" && url.query().is_none() && url.fragment().is_none() {
        origin
    } else {
        format!("{origin}/…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_only_the_origin() {
        let url =
            Url::parse("https://user:pw@arb-mainnet.example.com/v2/SECRETKEY?key=K2").unwrap();
        assert_eq!(redacted(&url), "https://arb-mainnet.example.com/…");
        let printed = format!("{:?}", ChainConfig::new(url));
        assert!(
            !printed.contains("SECRETKEY") && !printed.contains("pw"),
            "{printed}"
        );
        assert_eq!(
            redacted(&Url::parse("http://127.0.0.1:8545").unwrap()),
            "http://127.0.0.1:8545"
        );
    }
}
