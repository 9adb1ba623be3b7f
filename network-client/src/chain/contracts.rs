//! The slices of the Livepeer protocol contracts' ABIs that the gateway reads, declared with the same function
//! signatures as `livepeer/protocol` so that the selectors match the deployed contracts.

use alloy::primitives::{B256, keccak256};

alloy::sol! {
    /// The registry of protocol contracts (`contracts/Controller.sol`).
    #[sol(rpc)]
    interface Controller {
        function getContract(bytes32 _id) external view returns (address);
    }

    /// Stake and the transcoder pool (`contracts/bonding/BondingManager.sol`).
    #[sol(rpc)]
    interface BondingManager {
        function getFirstTranscoderInPool() external view returns (address);
        function getNextTranscoderInPool(address _transcoder) external view returns (address);
        function isActiveTranscoder(address _transcoder) external view returns (bool);
        function transcoderTotalStake(address _transcoder) external view returns (uint256);
    }

    /// Where each orchestrator publishes its service URI (`contracts/ServiceRegistry.sol`).
    #[sol(rpc)]
    interface ServiceRegistry {
        function getServiceURI(address _addr) external view returns (string);
    }

    /// The sender's deposit and reserve (`contracts/pm/mixins/MixinTicketBrokerCore.sol`, `MReserve.sol`).
    #[sol(rpc)]
    interface TicketBroker {
        struct Sender {
            uint256 deposit;
            uint256 withdrawRound;
        }

        struct ReserveInfo {
            uint256 fundsRemaining;
            uint256 claimedInCurrentRound;
        }

        function getSenderInfo(address _sender)
            external
            view
            returns (Sender memory sender, ReserveInfo memory reserve);
    }

    /// Protocol rounds (`contracts/rounds/RoundsManager.sol`).
    #[sol(rpc)]
    interface RoundsManager {
        function currentRound() external view returns (uint256);
    }
}

/// The Controller's key for a contract: `keccak256` of its name, as go-livepeer's `GetContract` computes it.
pub(super) fn contract_id(name: &str) -> B256 {
    keccak256(name.as_bytes())
}

#[cfg(test)]
mod tests {
    use alloy::hex;
    use alloy::sol_types::SolCall;

    use super::*;

    /// The selectors listed in `network-protocol.md` (§3.1, §4.4, §4.6) and go-livepeer's generated bindings.
    #[test]
    fn selectors_match_the_deployed_contracts() {
        let cases: [([u8; 4], &str); 8] = [
            (Controller::getContractCall::SELECTOR, "e16c7d98"),
            (
                BondingManager::getFirstTranscoderInPoolCall::SELECTOR,
                "88a6c749",
            ),
            (
                BondingManager::getNextTranscoderInPoolCall::SELECTOR,
                "235c9603",
            ),
            (BondingManager::isActiveTranscoderCall::SELECTOR, "08802374"),
            (
                BondingManager::transcoderTotalStakeCall::SELECTOR,
                "9ef9df94",
            ),
            (ServiceRegistry::getServiceURICall::SELECTOR, "214c2a4b"),
            (TicketBroker::getSenderInfoCall::SELECTOR, "e1a589da"),
            (RoundsManager::currentRoundCall::SELECTOR, "8a19c8bc"),
        ];
        for (selector, want) in cases {
            assert_eq!(hex::encode(selector), want);
        }
    }

    #[test]
    fn contract_ids_are_the_keccak_of_the_name() {
        assert_eq!(contract_id("TicketBroker"), keccak256(b"TicketBroker"),);
        assert_ne!(contract_id("BondingManager"), contract_id("bondingmanager"));
    }
}
