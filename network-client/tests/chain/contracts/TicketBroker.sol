// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

interface IController {
    function getContract(bytes32 _id) external view returns (address);
}

interface IRoundsManager {
    function currentRound() external view returns (uint256);
}

/// Test stand-in for Livepeer's TicketBroker: the sender side of the deposit and reserve (funding, unlock, and
/// the getSenderInfo read). No redemption, no reserve claims.
contract TicketBroker {
    struct Sender {
        uint256 deposit;
        uint256 withdrawRound;
    }

    struct ReserveInfo {
        uint256 fundsRemaining;
        uint256 claimedInCurrentRound;
    }

    /// Rounds between unlock() and the withdraw round, as on Arbitrum.
    uint256 private constant UNLOCK_PERIOD = 2;

    IController private immutable controller;
    mapping(address => Sender) private senders;
    mapping(address => uint256) private reserves;

    constructor(IController _controller) {
        controller = _controller;
    }

    function fundDepositAndReserve(uint256 _depositAmount, uint256 _reserveAmount) external payable {
        require(msg.value == _depositAmount + _reserveAmount, "value must be deposit + reserve");
        Sender storage sender = senders[msg.sender];
        sender.deposit += _depositAmount;
        reserves[msg.sender] += _reserveAmount;
        // Funding again cancels a pending unlock.
        sender.withdrawRound = 0;
    }

    function unlock() external {
        Sender storage sender = senders[msg.sender];
        require(sender.deposit > 0 || reserves[msg.sender] > 0, "nothing to unlock");
        require(sender.withdrawRound == 0, "unlock already pending");
        IRoundsManager rounds = IRoundsManager(controller.getContract(keccak256("RoundsManager")));
        sender.withdrawRound = rounds.currentRound() + UNLOCK_PERIOD;
    }

    function getSenderInfo(address _sender) public view returns (Sender memory sender, ReserveInfo memory reserve) {
        sender = senders[_sender];
        reserve = ReserveInfo(reserves[_sender], 0);
    }
}
