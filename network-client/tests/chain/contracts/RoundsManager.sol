// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// Test stand-in for Livepeer's RoundsManager: the current round is whatever the test sets.
contract RoundsManager {
    uint256 private round;

    function setCurrentRound(uint256 _round) external {
        round = _round;
    }

    function currentRound() public view returns (uint256) {
        return round;
    }
}
