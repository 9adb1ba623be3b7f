// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// Test stand-in for Livepeer's ServiceRegistry: each orchestrator publishes its own service URI.
contract ServiceRegistry {
    mapping(address => string) private uris;

    function setServiceURI(string calldata _serviceURI) external {
        uris[msg.sender] = _serviceURI;
    }

    function getServiceURI(address _addr) public view returns (string memory) {
        return uris[_addr];
    }
}
