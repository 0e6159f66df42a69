//! The Secret holding the token server's JWT signing keys, and their rotation.
//!
//! A rotation never fails a verification: a new key is written with a `signsFrom` one
//! publish lead in the future, so it sits in every `/jwks` for that long before any token
//! carries its `kid`; the key it replaces stays until the last token it signed has expired
//! (the longest lifetime this operator grants, plus the lead again for clock skew and
//! caches). Every write replaces the Secret with the resourceVersion read, so two
//! controllers cannot both add a key or lose one another's.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::SignedDuration;
use jsonwebtoken::Algorithm;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};

use super::Error;
use crate::api::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::auth::keys::{SECRET_KEY, StoredKey, StoredKeys, new_sealing_key};

/// When keys are replaced.
#[derive(Clone, Debug)]
pub struct Rotation {
    /// The algorithm of new keys. Changing it rotates at once (with the usual lead).
    pub algorithm: Algorithm,
    /// How long a key signs before the next one takes over.
    pub interval: SignedDuration,
    /// How long a new key is published before it signs: longer than any verifier caches
    /// the JWK Set, and than clocks disagree.
    pub publish_lead: SignedDuration,
    /// The longest access-token lifetime the operator grants.
    pub max_token_lifetime: SignedDuration,
}

/// What one look at the key set calls for.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    /// Add a key that signs from this unix second.
    add: Option<i64>,
    /// Drop these keys: no unexpired token carries their `kid`.
    remove: Vec<String>,
    /// Add the sealing key the set lacks (a set written before there was one).
    add_sealing_key: bool,
}

fn plan(stored: &StoredKeys, now: i64, r: &Rotation) -> Plan {
    let mut keys: Vec<&StoredKey> = stored.keys.iter().collect();
    keys.sort_by_key(|k| k.signs_from);
    let lead = r.publish_lead.as_secs();
    let add = match keys.last() {
        None => Some(now),
        // A key is already waiting for its turn.
        Some(newest) if newest.signs_from > now => None,
        Some(newest)
            if newest.alg != r.algorithm
                || now + lead >= newest.signs_from + r.interval.as_secs() =>
        {
            Some(now + lead)
        }
        Some(_) => None,
    };
    let retain = r.max_token_lifetime.as_secs() + lead;
    let remove = keys
        .windows(2)
        .filter(|pair| pair[1].signs_from <= now && now >= pair[1].signs_from + retain)
        .map(|pair| pair[0].kid.clone())
        .collect();
    Plan {
        add,
        remove,
        add_sealing_key: stored.sealing_key.is_none(),
    }
}

/// Creates the Secret when it is missing, then keeps rotating its keys until the task is
/// dropped. Only the first creation can fail the caller: later failures are logged and
/// retried on the next tick, since the keys in place keep working meanwhile.
pub async fn run(
    client: kube::Client,
    namespace: String,
    name: String,
    rotation: Rotation,
) -> Result<impl Future<Output = ()>, Error> {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    ensure(&api, &name, &rotation).await?;
    let tick = Duration::from_secs((rotation.publish_lead.as_secs() / 4).clamp(1, 60) as u64);
    Ok(async move {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(e) = rotate(&api, &name, &rotation).await {
                tracing::warn!(error = %e, secret = %name, "signing-key rotation failed; retrying");
            }
        }
    })
}

async fn ensure(api: &Api<Secret>, name: &str, rotation: &Rotation) -> Result<(), Error> {
    if api.get_opt(name).await.map_err(wrap(name))?.is_some() {
        return Ok(());
    }
    let keys = StoredKeys {
        keys: vec![StoredKey::generate(rotation.algorithm, now())?],
        sealing_key: Some(new_sealing_key()?),
    };
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_string(),
                MANAGED_BY.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data(&keys)?),
        ..Secret::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(secret = name, kid = %keys.keys[0].kid, "created signing keys");
            Ok(())
        }
        // Another replica won the race: its keys stand.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(wrap(name)(e)),
    }
}

async fn rotate(api: &Api<Secret>, name: &str, rotation: &Rotation) -> Result<(), Error> {
    let Some(mut secret) = api.get_opt(name).await.map_err(wrap(name))? else {
        tracing::warn!(
            secret = name,
            "signing-key Secret is gone; creating a new one"
        );
        return ensure(api, name, rotation).await;
    };
    // An unreadable set is left for a human: replacing it would invalidate every token.
    let raw = secret
        .data
        .as_ref()
        .and_then(|d| d.get(SECRET_KEY))
        .map(|b| b.0.as_slice())
        .unwrap_or_default();
    let mut keys = StoredKeys::from_json(raw)?;
    let now = now();
    let plan = plan(&keys, now, rotation);
    if plan == Plan::default() {
        return Ok(());
    }
    keys.keys.retain(|k| !plan.remove.contains(&k.kid));
    let added = match plan.add {
        Some(signs_from) => {
            let alg = rotation.algorithm;
            let key =
                tokio::task::spawn_blocking(move || StoredKey::generate(alg, signs_from)).await??;
            let kid = key.kid.clone();
            keys.keys.push(key);
            Some((kid, signs_from))
        }
        None => None,
    };
    if plan.add_sealing_key {
        keys.sealing_key = Some(new_sealing_key()?);
        tracing::info!(
            secret = name,
            "added the sealing key of authorization codes"
        );
    }
    secret.data = Some(data(&keys)?);
    // `replace` carries the resourceVersion read above: a concurrent rotation makes this
    // one fail with 409 and the next tick starts over from what the other wrote.
    api.replace(name, &PostParams::default(), &secret)
        .await
        .map_err(wrap(name))?;
    if let Some((kid, signs_from)) = added {
        tracing::info!(secret = name, %kid, signs_in_seconds = signs_from - now, "published a new signing key");
    }
    for kid in &plan.remove {
        tracing::info!(secret = name, %kid, "retired a signing key: every token it signed has expired");
    }
    Ok(())
}

fn data(keys: &StoredKeys) -> Result<BTreeMap<String, ByteString>, Error> {
    Ok(BTreeMap::from([(
        SECRET_KEY.to_string(),
        ByteString(keys.to_json()?.into_bytes()),
    )]))
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn wrap(name: &str) -> impl Fn(kube::Error) -> Error + '_ {
    move |source| Error::EnsureSigningKeys {
        name: name.to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, signs_from: i64, alg: Algorithm) -> StoredKey {
        StoredKey {
            kid: kid.into(),
            alg,
            private_key_pem: String::new(),
            signs_from,
        }
    }

    const ROTATION: Rotation = Rotation {
        algorithm: Algorithm::ES256,
        interval: SignedDuration::from_secs(1000),
        publish_lead: SignedDuration::from_secs(100),
        max_token_lifetime: SignedDuration::from_secs(300),
    };

    #[test]
    fn a_new_key_is_published_one_lead_before_the_interval_ends() {
        let keys = StoredKeys {
            keys: vec![key("a", 0, Algorithm::ES256)],
            sealing_key: Some("k".into()),
        };
        assert_eq!(plan(&keys, 899, &ROTATION), Plan::default());
        assert_eq!(
            plan(&keys, 900, &ROTATION),
            Plan {
                add: Some(1000),
                remove: vec![],
                add_sealing_key: false,
            }
        );
    }

    #[test]
    fn nothing_is_added_while_a_key_waits_for_its_turn() {
        let keys = StoredKeys {
            keys: vec![
                key("a", 0, Algorithm::ES256),
                key("b", 1000, Algorithm::ES256),
            ],
            sealing_key: Some("k".into()),
        };
        assert_eq!(plan(&keys, 950, &ROTATION), Plan::default());
    }

    #[test]
    fn an_old_key_stays_until_its_last_token_expired_and_the_lead_passed() {
        let keys = StoredKeys {
            keys: vec![
                key("b", 1000, Algorithm::ES256),
                key("a", 0, Algorithm::ES256),
            ],
            sealing_key: None,
        };
        // "a" signed until 1000; its tokens live up to 300 s, plus a 100 s lead.
        assert!(plan(&keys, 1399, &ROTATION).remove.is_empty());
        assert_eq!(plan(&keys, 1400, &ROTATION).remove, vec!["a".to_string()]);
    }

    #[test]
    fn changing_the_algorithm_rotates_at_once_with_the_lead() {
        let keys = StoredKeys {
            keys: vec![key("a", 0, Algorithm::RS256)],
            sealing_key: None,
        };
        assert_eq!(plan(&keys, 10, &ROTATION).add, Some(110));
    }

    #[test]
    fn a_set_without_a_sealing_key_gets_one_and_nothing_else() {
        let keys = StoredKeys {
            keys: vec![key("a", 0, Algorithm::ES256)],
            sealing_key: None,
        };
        assert_eq!(
            plan(&keys, 10, &ROTATION),
            Plan {
                add: None,
                remove: vec![],
                add_sealing_key: true,
            }
        );
    }
}
