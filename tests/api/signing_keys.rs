//! Signing keys: a usable P-256 pair on creation, the private half shown once, and the per-project limit.

use base64::Engine;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
use reqwest::Method;
use serde_json::{Value, json};
use studio_tests::{Backend, Reply, TestApp, on_both_databases};

on_both_databases!(
    created_keys_are_a_matching_p256_pair,
    keys_can_be_renamed_disabled_and_deleted,
    a_project_holds_at_most_ten_keys
);

const PATH: &str = "/access-control/signing-key";

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

/// Creates a key the way the SDKs do when no name is given: no body at all.
async fn create_without_body(app: &TestApp) -> Reply {
    app.call(Some(&app.key), Method::POST, PATH, None).await
}

/// Base64 of PEM text, decoded to the PEM text.
fn pem_of(field: &Value) -> String {
    let b64 = field
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {field}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("standard base64");
    String::from_utf8(bytes).expect("PEM is text")
}

async fn created_keys_are_a_matching_p256_pair(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reply = create_without_body(&app).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let key = reply.json.clone();
    let id = id_of(&key);
    assert_eq!(
        uuid::Uuid::parse_str(&id)
            .expect("a UUID")
            .get_version_num(),
        4
    );
    assert_eq!(key["name"], "Signing Key 1");
    assert_eq!(key["projectId"], app.project_id.as_str());
    assert_eq!(key["userId"], app.user_id.as_str());
    assert_eq!(key["disabled"], false);
    assert!(key["createdAt"].as_i64().unwrap() > 1_600_000_000_000);

    let public_pem = pem_of(&key["publicKey"]);
    let private_pem = pem_of(&key["privateKey"]);
    assert!(
        public_pem.starts_with("-----BEGIN PUBLIC KEY-----"),
        "{public_pem}"
    );
    assert!(
        private_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8: {}",
        &private_pem[..40.min(private_pem.len())]
    );
    let secret = p256::SecretKey::from_pkcs8_pem(&private_pem).expect("a P-256 PKCS#8 private key");
    let public =
        p256::PublicKey::from_public_key_pem(&public_pem).expect("a P-256 SPKI public key");
    assert_eq!(
        secret.public_key(),
        public,
        "the two halves belong together"
    );

    // What the private key signs, the public key verifies (as a playback JWT check would).
    let message = b"video+abcd1234efgh5678";
    let signature: p256::ecdsa::Signature = p256::ecdsa::SigningKey::from(&secret).sign(message);
    let verifier = p256::ecdsa::VerifyingKey::from(&public);
    assert!(verifier.verify(message, &signature).is_ok());
    assert!(verifier.verify(b"video+someone-else", &signature).is_err());

    // A second key is a different pair, with the next default name; a given name is kept.
    let second = create_without_body(&app).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.json["name"], "Signing Key 2");
    assert_ne!(second.json["publicKey"], key["publicKey"]);
    assert_ne!(second.json["privateKey"], key["privateKey"]);
    let other_public =
        p256::PublicKey::from_public_key_pem(&pem_of(&second.json["publicKey"])).unwrap();
    assert!(
        p256::ecdsa::VerifyingKey::from(&other_public)
            .verify(message, &signature)
            .is_err()
    );
    let named = app.post(PATH, json!({"name": "web player"})).await;
    assert_eq!(named.status, 200, "{}", named.text);
    assert_eq!(named.json["name"], "web player");
    // projectId in the body is ignored: the key's project is the caller's.
    let foreign = app
        .post(
            PATH,
            json!({"name": "x", "projectId": uuid::Uuid::new_v4().to_string()}),
        )
        .await;
    assert_eq!(foreign.status, 200, "{}", foreign.text);
    assert_eq!(foreign.json["projectId"], app.project_id.as_str());
    app.post(PATH, json!({"name": ""}))
        .await
        .assert_error(422, "name");
    app.post(PATH, json!({"alg": "RS256"}))
        .await
        .assert_error(422, "unknown field `alg`");

    // The private key is never shown again.
    let got = app.get(&format!("{PATH}/{id}")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert!(got.json.get("privateKey").is_none(), "{}", got.text);
    assert_eq!(got.json["publicKey"], key["publicKey"]);
    assert_eq!(got.json["name"], "Signing Key 1");
    let private_b64 = key["privateKey"].as_str().unwrap();
    assert!(!got.text.contains(private_b64));
    let listed = app.get(PATH).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let items = listed.json.as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert!(
        items
            .iter()
            .all(|k| k.get("privateKey").is_none() && k["publicKey"].is_string()),
        "{}",
        listed.text
    );
    assert!(!listed.text.contains(private_b64));
}

async fn keys_can_be_renamed_disabled_and_deleted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = app.post(PATH, json!({"name": "k"})).await.json;
    let id = id_of(&key);
    let path = format!("{PATH}/{id}");

    let reply = app.patch(&path, json!({"disabled": true})).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let got = app.get(&path).await.json;
    assert_eq!(got["disabled"], true);
    assert_eq!(got["name"], "k");
    assert_eq!(
        app.patch(&path, json!({"name": "renamed"})).await.status,
        204
    );
    let got = app.get(&path).await.json;
    assert_eq!(got["name"], "renamed");
    assert_eq!(got["disabled"], true, "a rename keeps the key disabled");
    assert_eq!(got["publicKey"], key["publicKey"]);
    assert_eq!(
        app.patch(&path, json!({"disabled": false})).await.status,
        204
    );
    assert_eq!(app.get(&path).await.json["disabled"], false);
    app.patch(&path, json!({"publicKey": "x"}))
        .await
        .assert_error(422, "unknown field `publicKey`");
    app.patch(&path, json!({"disabled": "yes"}))
        .await
        .assert_error(422, "disabled");
    app.patch(
        &format!("{PATH}/{}", uuid::Uuid::new_v4()),
        json!({"name": "x"}),
    )
    .await
    .assert_error(404, "not found");

    // Other tenants cannot reach it.
    let other = app.other_tenant("eve").await;
    app.call(Some(&other.key), Method::GET, &path, None)
        .await
        .assert_error(404, "not found");
    app.call(
        Some(&other.key),
        Method::PATCH,
        &path,
        Some(json!({"disabled": true})),
    )
    .await
    .assert_error(404, "not found");
    app.call(Some(&other.key), Method::DELETE, &path, None)
        .await
        .assert_error(404, "not found");
    assert_eq!(
        app.call(Some(&other.key), Method::GET, PATH, None)
            .await
            .json,
        json!([])
    );
    assert_eq!(app.get(&path).await.json["disabled"], false);

    let deleted = app.delete(&path).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    app.get(&path).await.assert_error(404, "not found");
    app.delete(&path).await.assert_error(404, "not found");
    app.patch(&path, json!({"name": "back"}))
        .await
        .assert_error(404, "not found");
    assert_eq!(app.get(PATH).await.json, json!([]));
}

async fn a_project_holds_at_most_ten_keys(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut ids = Vec::new();
    for n in 1..=10 {
        let reply = create_without_body(&app).await;
        assert_eq!(reply.status, 200, "key {n}: {}", reply.text);
        ids.push(id_of(&reply.json));
    }
    let refused = create_without_body(&app).await;
    refused.assert_error(403, "at most 10 signing keys");
    assert!(refused.json.get("privateKey").is_none());
    assert_eq!(
        app.get(PATH).await.json.as_array().unwrap().len(),
        10,
        "the refused key was not stored"
    );
    app.post(PATH, json!({"name": "eleventh"}))
        .await
        .assert_error(403, "signing keys");

    // The limit is per project: another project of the same user still has room.
    let project = app.other_project("second").await;
    let elsewhere = app.call(Some(&project.key), Method::POST, PATH, None).await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.text);
    assert_eq!(elsewhere.json["projectId"], project.project_id.as_str());

    // Deleting one frees a slot, for exactly one more.
    assert_eq!(app.delete(&format!("{PATH}/{}", ids[3])).await.status, 204);
    let again = app.post(PATH, json!({"name": "replacement"})).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["name"], "replacement");
    create_without_body(&app)
        .await
        .assert_error(403, "at most 10 signing keys");
    assert_eq!(app.get(PATH).await.json.as_array().unwrap().len(), 10);

    // Default names never repeat, even after deletes.
    assert_eq!(app.delete(&format!("{PATH}/{}", ids[0])).await.status, 204);
    let unnamed = create_without_body(&app).await;
    assert_eq!(unnamed.status, 200, "{}", unnamed.text);
    let names: Vec<String> = app
        .get(PATH)
        .await
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_string())
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "names repeat: {names:?}");
}
