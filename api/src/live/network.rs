//! The embedded Livepeer gateway as the live pipeline's transcoder (`transcode.transcoder = network | auto`):
//! turns `[network]` into a [`Gateway`], loads the ETH key, and on chain reads the sender's TicketBroker
//! deposit and reserve, refusing to start an unfunded sender and exporting both in `/metrics`.

use std::time::Duration;

use anyhow::Context;
use studio_network_client::chain::{ChainClient, ChainConfig, SenderInfo};
use studio_network_client::discovery::{Discovery, WebhookDiscovery, parse_address};
use studio_network_client::gateway::{Gateway, GatewayConfig};
use studio_network_client::keystore::KeySource;
use studio_network_client::orchestrator::Identity;
use studio_network_client::pm::{PriceInfo, PricePerPixel};
use studio_network_client::{Address, U256};

use crate::config::{NetworkConfig, NetworkMode};

/// How often the sender's deposit and reserve are read again for `/metrics`.
const FUNDING_REFRESH: Duration = Duration::from_secs(300);

/// The gateway `config` describes, ready to transcode.
pub async fn gateway(config: &NetworkConfig) -> anyhow::Result<Gateway> {
    let identity = match config.mode {
        NetworkMode::Offchain => Identity::OffChain,
        NetworkMode::Onchain => {
            let source = key_source(config)?;
            // Decrypting a keystore runs scrypt: seconds of CPU, off the async threads.
            let signer = tokio::task::spawn_blocking(move || source.load())
                .await?
                .context("loading the gateway's ETH key")?;
            Identity::on_chain(signer).context("signing the gateway's InfoSig")?
        }
    };
    let chain = match (&config.eth_rpc_url, config.mode) {
        (Some(url), NetworkMode::Onchain) => Some(chain(config, url).await?),
        (Some(_), NetworkMode::Offchain) => {
            tracing::warn!(
                "network.eth_rpc_url is set but network.mode is offchain: the chain is not read"
            );
            None
        }
        (None, _) => None,
    };
    if let (Some(chain), Some(signer)) = (&chain, identity.signer()) {
        let address = signer.address();
        let (info, round) = funding(chain, address).await?;
        info.check_funded(round).map_err(|e| {
            anyhow::anyhow!("the gateway's account {address} cannot pay orchestrators: {e}")
        })?;
        tracing::info!(%address, deposit_wei = %info.deposit, reserve_wei = %info.reserve, "gateway account funded in the TicketBroker");
        tokio::spawn(report_funding(chain.clone(), address));
    } else if let Some(signer) = identity.signer() {
        tracing::warn!(address = %signer.address(), "network.eth_rpc_url is not set: the account's deposit and reserve are not checked");
    }
    let discovery = if !config.orchestrators.is_empty() {
        let uris = config
            .orchestrators
            .iter()
            .map(|a| parse_address(a))
            .collect::<Result<Vec<_>, _>>()
            .context("network.orchestrators")?;
        Discovery::Static(uris)
    } else if let Some(url) = &config.orchestrator_webhook {
        Discovery::Webhook(WebhookDiscovery::new(url.parse().with_context(|| {
            format!("network.orchestrator_webhook {url:?} is not a URL")
        })?))
    } else {
        Discovery::Chain(chain.context("on-chain discovery needs network.eth_rpc_url")?)
    };
    let mut gateway = GatewayConfig::new(discovery, identity);
    if config.max_price_per_unit > 0 {
        let price = PriceInfo {
            price_per_unit: i64::try_from(config.max_price_per_unit)
                .context("network.max_price_per_unit is too large")?,
            pixels_per_unit: i64::try_from(config.pixels_per_unit.max(1))
                .context("network.pixels_per_unit is too large")?,
        };
        gateway.max_price = Some(PricePerPixel::from_price_info(&price)?);
    }
    tracing::info!(mode = ?config.mode, discovery = ?gateway.discovery, max_price = ?gateway.max_price.as_ref().map(|p| p.as_rational().to_string()), "Livepeer network gateway ready");
    Ok(Gateway::new(gateway))
}

fn key_source(config: &NetworkConfig) -> anyhow::Result<KeySource> {
    match (
        &config.eth_keystore,
        &config.eth_keystore_password,
        &config.eth_private_key,
    ) {
        (Some(path), Some(password), None) => Ok(KeySource::KeystoreFile {
            path: path.clone(),
            password: password.clone(),
        }),
        (Some(_), None, None) => {
            anyhow::bail!("network.eth_keystore needs network.eth_keystore_password")
        }
        (None, _, Some(key)) => Ok(KeySource::PrivateKey(key.clone())),
        (Some(_), _, Some(_)) => {
            anyhow::bail!("set network.eth_keystore or network.eth_private_key, not both")
        }
        (None, _, None) => anyhow::bail!(
            "network.mode = onchain needs network.eth_keystore or network.eth_private_key"
        ),
    }
}

async fn chain(config: &NetworkConfig, url: &str) -> anyhow::Result<ChainClient> {
    let mut chain = ChainConfig::new(url.parse().context("network.eth_rpc_url is not a URL")?);
    if let Some(controller) = &config.eth_controller {
        chain.controller = controller
            .parse()
            .with_context(|| format!("network.eth_controller {controller:?} is not an address"))?;
    }
    Ok(ChainClient::connect(chain).await?)
}

async fn funding(chain: &ChainClient, address: Address) -> anyhow::Result<(SenderInfo, U256)> {
    let info = chain
        .sender_info(address)
        .await
        .context("reading the gateway's TicketBroker deposit and reserve")?;
    let round = chain
        .current_round()
        .await
        .context("reading the current round")?;
    metrics::gauge!("studio_network_sender_deposit_wei").set(wei(info.deposit));
    metrics::gauge!("studio_network_sender_reserve_wei").set(wei(info.reserve));
    Ok((info, round))
}

/// Keeps the deposit and reserve gauges current; a failed read is logged and retried later.
async fn report_funding(chain: ChainClient, address: Address) {
    loop {
        tokio::time::sleep(FUNDING_REFRESH).await;
        match funding(&chain, address).await {
            Ok((info, round)) => {
                if let Err(e) = info.check_funded(round) {
                    tracing::error!(%address, error = %e, "the gateway's account can no longer pay orchestrators");
                }
            }
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "reading the gateway's funding failed"
            ),
        }
    }
}

fn wei(amount: U256) -> f64 {
    amount.to_string().parse().unwrap_or(f64::MAX)
}
