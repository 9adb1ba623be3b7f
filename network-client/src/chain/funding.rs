//! The gateway's deposit and reserve in the TicketBroker (§4.4) and the check that it may send tickets at all.

use alloy::primitives::U256;

/// What `TicketBroker.getSenderInfo(sender)` returns, flattened. Amounts are in wei.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderInfo {
    /// Pays winning tickets first.
    pub deposit: U256,
    /// The round from which an unlocked deposit and reserve can be withdrawn; 0 when no unlock was requested.
    pub withdraw_round: U256,
    /// The reserve's `fundsRemaining`: pays what the deposit cannot, split evenly among the active orchestrators.
    /// Orchestrators size their ticket face value from it.
    pub reserve: U256,
    /// The reserve's `claimedInCurrentRound`.
    pub claimed_in_current_round: U256,
}

/// Why the gateway's TicketBroker funds cannot back tickets. Each case says what to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FundingError {
    /// Neither a deposit nor a reserve: the account was never funded (or was withdrawn).
    #[error(
        "the gateway has no deposit and no reserve in the TicketBroker: fund both with \
         fundDepositAndReserve(deposit, reserve) from the gateway's account"
    )]
    Unfunded,
    /// A reserve but no deposit. go-livepeer refuses to send tickets without a deposit to pay them from.
    #[error(
        "the gateway has no deposit in the TicketBroker (reserve: {reserve} wei): winning tickets are paid from \
         the deposit; add one with fundDeposit()"
    )]
    NoDeposit {
        /// The reserve there is.
        reserve: U256,
    },
    /// A deposit but no reserve. Orchestrators derive their ticket face value from the reserve and refuse a
    /// sender without one.
    #[error(
        "the gateway has no reserve in the TicketBroker (deposit: {deposit} wei): orchestrators refuse tickets \
         from a sender without a reserve; add one with fundReserve()"
    )]
    NoReserve {
        /// The deposit there is.
        deposit: U256,
    },
    /// `unlock()` was called and the withdraw round has not come yet. Like go-livepeer, the gateway does not
    /// pay with funds that may leave before the tickets are redeemed.
    #[error(
        "an unlock of the gateway's deposit and reserve is pending (withdrawable from round {withdraw_round}, \
         current round {current_round}): tickets backed by funds about to leave are refused; call \
         cancelUnlock() or fund again to cancel it"
    )]
    UnlockPending {
        /// The round from which the funds can be withdrawn.
        withdraw_round: U256,
        /// The round now.
        current_round: U256,
    },
    /// The unlock period is over: the funds can be withdrawn and winning tickets can no longer be redeemed.
    #[error(
        "the gateway's deposit and reserve are unlocked (withdrawable since round {withdraw_round}, current \
         round {current_round}): tickets cannot be redeemed against them; call cancelUnlock() or fund again"
    )]
    Unlocked {
        /// The round from which the funds can be withdrawn.
        withdraw_round: U256,
        /// The round now.
        current_round: U256,
    },
}

impl SenderInfo {
    /// Checks that these funds can back tickets in `current_round`: a deposit, a reserve, and no unlock.
    pub fn check_funded(&self, current_round: U256) -> Result<(), FundingError> {
        if self.deposit.is_zero() && self.reserve.is_zero() {
            return Err(FundingError::Unfunded);
        }
        if !self.withdraw_round.is_zero() {
            let (withdraw_round, current_round) = (self.withdraw_round, current_round);
            return Err(if current_round < withdraw_round {
                FundingError::UnlockPending {
                    withdraw_round,
                    current_round,
                }
            } else {
                FundingError::Unlocked {
                    withdraw_round,
                    current_round,
                }
            });
        }
        if self.deposit.is_zero() {
            return Err(FundingError::NoDeposit {
                reserve: self.reserve,
            });
        }
        if self.reserve.is_zero() {
            return Err(FundingError::NoReserve {
                deposit: self.deposit,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(deposit: u64, reserve: u64, withdraw_round: u64) -> SenderInfo {
        SenderInfo {
            deposit: U256::from(deposit),
            withdraw_round: U256::from(withdraw_round),
            reserve: U256::from(reserve),
            claimed_in_current_round: U256::ZERO,
        }
    }

    #[test]
    fn each_shortfall_has_its_own_error() {
        let round = U256::from(100);
        assert_eq!(info(5, 7, 0).check_funded(round), Ok(()));
        assert_eq!(
            info(0, 0, 0).check_funded(round),
            Err(FundingError::Unfunded)
        );
        assert_eq!(
            info(0, 7, 0).check_funded(round),
            Err(FundingError::NoDeposit {
                reserve: U256::from(7)
            })
        );
        assert_eq!(
            info(5, 0, 0).check_funded(round),
            Err(FundingError::NoReserve {
                deposit: U256::from(5)
            })
        );
        assert_eq!(
            info(5, 7, 102).check_funded(round),
            Err(FundingError::UnlockPending {
                withdraw_round: U256::from(102),
                current_round: round
            })
        );
        assert_eq!(
            info(5, 7, 100).check_funded(round),
            Err(FundingError::Unlocked {
                withdraw_round: U256::from(100),
                current_round: round
            })
        );
        // Withdrawn: both zero, but the withdraw round stays set on chain. "Unfunded" is the useful answer.
        assert_eq!(
            info(0, 0, 90).check_funded(round),
            Err(FundingError::Unfunded)
        );
    }

    #[test]
    fn messages_carry_the_amounts() {
        let text = info(0, 1234, 0)
            .check_funded(U256::from(1))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("no deposit") && text.contains("1234 wei"),
            "{text}"
        );
    }
}
