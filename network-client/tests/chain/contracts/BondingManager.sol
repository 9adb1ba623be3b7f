// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// Test stand-in for Livepeer's BondingManager: the transcoder pool as a singly linked list, with the read
/// functions the gateway calls. The real pool is sorted by stake; here the test appends in the order it wants.
contract BondingManager {
    struct Transcoder {
        uint256 totalStake;
        bool active;
        bool inPool;
        address next;
    }

    mapping(address => Transcoder) private transcoders;
    address private head;
    address private tail;

    function addTranscoder(address _transcoder, uint256 _totalStake, bool _active) external {
        require(_transcoder != address(0), "zero address");
        Transcoder storage t = transcoders[_transcoder];
        require(!t.inPool, "already in the pool");
        t.totalStake = _totalStake;
        t.active = _active;
        t.inPool = true;
        if (head == address(0)) {
            head = _transcoder;
        } else {
            transcoders[tail].next = _transcoder;
        }
        tail = _transcoder;
    }

    /// Rewrites one link, so that a test can build a pool that loops.
    function setNextTranscoder(address _transcoder, address _next) external {
        transcoders[_transcoder].next = _next;
    }

    function getFirstTranscoderInPool() public view returns (address) {
        return head;
    }

    function getNextTranscoderInPool(address _transcoder) public view returns (address) {
        return transcoders[_transcoder].next;
    }

    function isActiveTranscoder(address _transcoder) public view returns (bool) {
        return transcoders[_transcoder].active;
    }

    function transcoderTotalStake(address _transcoder) public view returns (uint256) {
        return transcoders[_transcoder].totalStake;
    }
}
