//! The Deployment controller simulation: ReplicaSets per pod template, Pods whose fate the
//! image name (or a test's behaviour rule) decides, and Deployment status moving forward over
//! time, as the real controllers do.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Behavior;
use crate::store::{Key, State, kind_named, now_rfc3339};

fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Like the real pod-template-hash: short, lowercase alphanumeric.
    format!("{:010x}", h & 0xff_ffff_ffff)
}

pub(crate) fn behavior(st: &State, image: &str) -> Behavior {
    if let Some((_, b)) = st
        .behaviors
        .iter()
        .rev()
        .find(|(s, _)| image.contains(s.as_str()))
    {
        return *b;
    }
    if image.contains("fail-pull") {
        Behavior::ImagePullBackOff
    } else if image.contains("crash") {
        Behavior::CrashLoopBackOff
    } else if image.contains("config-error") {
        Behavior::CreateContainerConfigError
    } else if image.contains("never-ready") {
        Behavior::NeverReady
    } else if image.contains("slow") {
        Behavior::Slow(Duration::from_secs(3))
    } else {
        Behavior::Ready
    }
}

fn revision(v: &Value) -> u64 {
    v["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn event(st: &mut State, ns: &str, pod: &str, reason: &str, message: &str) {
    let Some(k) = kind_named("Event") else { return };
    let name = format!("{pod}.{reason}").to_lowercase();
    if st.get(k, ns, &name).is_some() {
        return;
    }
    st.put(
        k,
        ns,
        json!({
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": ns, "apiVersion": "v1"},
            "reason": reason,
            "message": message,
            "type": "Warning",
            "count": 1,
            "firstTimestamp": now_rfc3339(),
            "lastTimestamp": now_rfc3339(),
            "source": {"component": "kubelet"},
        }),
    );
}

/// One pass over every Deployment. Writes only what changed.
pub fn reconcile(st: &mut State) {
    let (Some(dk), Some(rk), Some(pk)) = (
        kind_named("Deployment"),
        kind_named("ReplicaSet"),
        kind_named("Pod"),
    ) else {
        return;
    };
    let deployments = st.list(dk, None);
    for d in deployments {
        let ns = d["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = d["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let uid = d["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
        let desired = d["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
        let template = d["spec"]["template"].clone();
        let hash = fnv(&template.to_string());
        let dkey: Key = (dk.plural, ns.clone(), name.clone());

        let owned: Vec<Value> = st
            .list(rk, Some(&ns))
            .into_iter()
            .filter(|rs| {
                rs["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|o| o["uid"] == uid.as_str()))
            })
            .collect();
        let max_rev = owned.iter().map(revision).max().unwrap_or(0);
        let rs_name = format!("{name}-{hash}");
        let current = owned
            .iter()
            .find(|rs| rs["metadata"]["name"] == rs_name.as_str())
            .cloned();
        let rev = match &current {
            Some(rs) if revision(rs) == max_rev => max_rev,
            _ => max_rev + 1,
        };
        let mut labels = template["metadata"]["labels"].clone();
        labels["pod-template-hash"] = json!(hash);
        let want_rs = json!({
            "metadata": {
                "name": rs_name,
                "namespace": ns,
                "labels": labels,
                "annotations": {"deployment.kubernetes.io/revision": rev.to_string()},
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                    "uid": uid, "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "spec": {
                "replicas": desired,
                "selector": {"matchLabels": {"pod-template-hash": hash}},
                "template": {"metadata": {"labels": labels}, "spec": template["spec"].clone()},
            },
        });
        let rs_changed = current.as_ref().is_none_or(|rs| {
            rs["spec"]["replicas"] != want_rs["spec"]["replicas"] || revision(rs) != rev
        });
        if rs_changed {
            let mut rs = current.clone().unwrap_or_else(|| want_rs.clone());
            rs["spec"]["replicas"] = json!(desired);
            rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                json!(rev.to_string());
            if current.is_none() {
                st.started.insert(dkey.clone(), Instant::now());
            }
            st.put(rk, &ns, rs);
        }
        // Old ReplicaSets scale to zero.
        for old in owned
            .iter()
            .filter(|rs| rs["metadata"]["name"] != rs_name.as_str())
        {
            if old["spec"]["replicas"].as_i64() != Some(0) {
                let mut o = old.clone();
                o["spec"]["replicas"] = json!(0);
                st.put(rk, &ns, o);
            }
        }
        if revision(&d) != rev {
            let mut dd = d.clone();
            dd["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                json!(rev.to_string());
            st.put(dk, &ns, dd);
        }

        let rs_uid = st
            .get(rk, &ns, &rs_name)
            .and_then(|rs| rs["metadata"]["uid"].as_str().map(str::to_owned))
            .unwrap_or_default();
        // Pods: the new ReplicaSet's up to `desired`; old ReplicaSets' are removed.
        let pods: Vec<Value> = st
            .list(pk, Some(&ns))
            .into_iter()
            .filter(|p| {
                p["metadata"]["labels"]["pod-template-hash"].is_string()
                    && p["metadata"]["ownerReferences"][0]["name"]
                        .as_str()
                        .is_some_and(|o| o.starts_with(&format!("{name}-")))
            })
            .collect();
        let image = template["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let fate = behavior(st, &image);
        let (mine, old): (Vec<Value>, Vec<Value>) = pods
            .into_iter()
            .partition(|p| p["metadata"]["labels"]["pod-template-hash"] == hash.as_str());
        let complete_new = mine.len() as i64 >= desired
            && mine
                .iter()
                .all(|p| p["status"]["containerStatuses"][0]["ready"] == true);
        // Old pods stay until the new ones are ready (maxUnavailable 0), as a rolling update.
        if complete_new || desired == 0 {
            for p in &old {
                let pn = p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                st.remove(pk, &ns, &pn);
            }
        }
        for (i, p) in mine.iter().enumerate() {
            if i as i64 >= desired {
                let pn = p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                st.remove(pk, &ns, &pn);
            }
        }
        for i in mine.len() as i64..desired {
            let pod = format!(
                "{rs_name}-{}",
                fnv(&format!("{rs_name}{i}{}", st.rv))
                    .get(..5)
                    .unwrap_or("00000")
            );
            let mut labels = labels.clone();
            labels["pod-template-hash"] = json!(hash);
            let mut object = json!({
                "metadata": {
                    "name": pod, "namespace": ns, "labels": labels,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": rs_name, "uid": rs_uid, "controller": true}],
                },
                "spec": template["spec"].clone(),
                "status": {"phase": "Pending", "conditions": [],
                    "containerStatuses": [{"name": template["spec"]["containers"][0]["name"],
                        "image": image, "imageID": "", "ready": false, "restartCount": 0,
                        "state": {"waiting": {"reason": "ContainerCreating"}}}]},
            });
            // What a Pod gets beyond its template (enableServiceLinks, requests from limits).
            crate::defaulting::default_object("Pod", &mut object, None, &mut String::new);
            if let Err(message) = crate::admission::admit_pod(st, &ns, &mut object) {
                crate::admission::failed_create(st, &ns, &rs_name, &message);
                break;
            }
            st.put(pk, &ns, object);
            st.started
                .insert((pk.plural, ns.clone(), pod.clone()), Instant::now());
            st.logs
                .entry((ns.clone(), pod.clone()))
                .or_default()
                .push(format!("pulling {image}"));
        }
        // Pod status moves forward with time.
        let mine: Vec<Value> = st
            .list(pk, Some(&ns))
            .into_iter()
            .filter(|p| p["metadata"]["labels"]["pod-template-hash"] == hash.as_str())
            .collect();
        for p in &mine {
            let pn = p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let age = st
                .started
                .get(&(pk.plural, ns.clone(), pn.clone()))
                .map_or(Duration::ZERO, Instant::elapsed);
            let ready_after = st.ready_after;
            let cname = template["spec"]["containers"][0]["name"].clone();
            let (phase, ready, state, restarts, log) = match fate {
                Behavior::Ready if age >= ready_after => (
                    "Running",
                    true,
                    json!({"running": {"startedAt": now_rfc3339()}}),
                    0,
                    Some(format!("started {image}")),
                ),
                Behavior::Slow(d) if age >= d => (
                    "Running",
                    true,
                    json!({"running": {"startedAt": now_rfc3339()}}),
                    0,
                    Some(format!("started {image}")),
                ),
                Behavior::ImagePullBackOff if age >= ready_after => {
                    let reason = if age >= ready_after * 2 {
                        "ImagePullBackOff"
                    } else {
                        "ErrImagePull"
                    };
                    event(
                        st,
                        &ns,
                        &pn,
                        "Failed",
                        &format!("Failed to pull image \"{image}\": not found"),
                    );
                    (
                        "Pending",
                        false,
                        json!({"waiting": {"reason": reason, "message": format!("Back-off pulling image \"{image}\"")}}),
                        0,
                        None,
                    )
                }
                Behavior::CrashLoopBackOff if age >= ready_after => {
                    let restarts = (age.as_millis() / ready_after.as_millis().max(1)) as i64;
                    event(
                        st,
                        &ns,
                        &pn,
                        "BackOff",
                        "Back-off restarting failed container",
                    );
                    (
                        "Running",
                        false,
                        json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}}),
                        restarts,
                        Some("exit status 1".to_owned()),
                    )
                }
                Behavior::CreateContainerConfigError if age >= ready_after => {
                    event(
                        st,
                        &ns,
                        &pn,
                        "Failed",
                        "Error: secret \"missing\" not found",
                    );
                    (
                        "Pending",
                        false,
                        json!({"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"missing\" not found"}}),
                        0,
                        None,
                    )
                }
                Behavior::NeverReady if age >= ready_after => (
                    "Running",
                    false,
                    json!({"running": {"startedAt": now_rfc3339()}}),
                    0,
                    Some(format!("started {image}")),
                ),
                _ => (
                    "Pending",
                    false,
                    json!({"waiting": {"reason": "ContainerCreating"}}),
                    0,
                    None,
                ),
            };
            let status = json!({
                "phase": phase,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "containerStatuses": [{"name": cname, "image": image, "ready": ready,
                    "imageID": if state.get("waiting").is_some() { String::new() } else { format!("docker-pullable://{image}") },
                    "restartCount": restarts, "state": state}],
            });
            if p["status"] != status {
                let mut np = p.clone();
                np["status"] = status;
                st.put(pk, &ns, np);
                if let Some(line) = log {
                    let lines = st.logs.entry((ns.clone(), pn.clone())).or_default();
                    if lines.last() != Some(&line) {
                        lines.push(line);
                    }
                }
            }
        }

        // Deployment status.
        let all: Vec<Value> = st
            .list(pk, Some(&ns))
            .into_iter()
            .filter(|p| {
                p["metadata"]["ownerReferences"][0]["name"]
                    .as_str()
                    .is_some_and(|o| o.starts_with(&format!("{name}-")))
            })
            .collect();
        let ready_of = |v: &[Value]| {
            v.iter()
                .filter(|p| p["status"]["containerStatuses"][0]["ready"] == true)
                .count() as i64
        };
        let updated = mine.len() as i64;
        let ready = ready_of(&all);
        let updated_ready = ready_of(&mine);
        let complete =
            updated == desired && updated_ready == desired && all.len() as i64 == desired;
        let deadline =
            Duration::from_secs(d["spec"]["progressDeadlineSeconds"].as_u64().unwrap_or(600));
        let elapsed = st
            .started
            .get(&dkey)
            .map_or(Duration::ZERO, Instant::elapsed);
        let progressing = if complete {
            json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                "message": format!("ReplicaSet \"{rs_name}\" has successfully progressed.")})
        } else if elapsed > deadline {
            json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                "message": format!("ReplicaSet \"{rs_name}\" has timed out progressing.")})
        } else {
            json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                "message": format!("ReplicaSet \"{rs_name}\" is progressing.")})
        };
        let available = json!({"type": "Available",
            "status": if ready >= desired { "True" } else { "False" },
            "reason": if ready >= desired { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }});
        let status = json!({
            "observedGeneration": d["metadata"]["generation"],
            "replicas": all.len(),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": (desired - ready).max(0),
            "conditions": [available, progressing],
        });
        let current = st.get(dk, &ns, &name).cloned();
        if let Some(mut cur) = current
            && cur["status"] != status
        {
            cur["status"] = status;
            st.put(dk, &ns, cur);
        }
    }
}
