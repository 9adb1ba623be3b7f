// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// Test stand-in for Livepeer's Controller: maps keccak256(contract name) to the contract's address.
contract Controller {
    mapping(bytes32 => address) private registry;

    function setContract(bytes32 _id, address _contract) external {
        registry[_id] = _contract;
    }

    function getContract(bytes32 _id) public view returns (address) {
        return registry[_id];
    }
}
