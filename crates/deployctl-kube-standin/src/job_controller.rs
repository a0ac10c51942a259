//! The Job controller simulation (`batch/v1` Jobs as hook tasks use them: one pod, no
//! retries): a pod per Job labelled as the real controller labels it (`job-name`,
//! `batch.kubernetes.io/job-name`, `controller-uid`) and owned by the Job; the pod starts
//! after `ready_after` — or, as a kubelet does, waits in `CreateContainerConfigError` while
//! an `envFrom` ConfigMap or Secret is missing —, prints what the test set for its image
//! (`set_job_output`, `${NAME}` from its environment), and terminates with the exit code of
//! its image's [`Behavior::Exit`](crate::Behavior) (0 without a rule). The Job then gets
//! `status.succeeded` and the `Complete` condition, or `status.failed` and `Failed`
//! (`BackoffLimitExceeded`); past `activeDeadlineSeconds` it fails with `DeadlineExceeded`
//! and its pod is removed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::Behavior;
use crate::store::{Kind, State, kind_named, now_rfc3339};

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// Whether a Job has a terminal condition.
fn finished(job: &Value) -> bool {
    job["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
    })
}

/// The environment a pod's first container gets, or the kubelet's message for a missing
/// `envFrom` source.
fn environment(st: &State, ns: &str, pod: &Value) -> Result<BTreeMap<String, String>, String> {
    let (Some(ck), Some(sk)) = (kind_named("ConfigMap"), kind_named("Secret")) else {
        return Ok(BTreeMap::new());
    };
    let c = &pod["spec"]["containers"][0];
    let mut env = BTreeMap::new();
    for from in c["envFrom"].as_array().into_iter().flatten() {
        let optional = |r: &Value| r["optional"] == true;
        if let Some(r) = from.get("configMapRef") {
            let name = text(&r["name"]);
            match st.get(ck, ns, &name) {
                Some(cm) => {
                    for (k, v) in cm["data"].as_object().into_iter().flatten() {
                        env.insert(k.clone(), text(v));
                    }
                }
                None if optional(r) => {}
                None => return Err(format!("configmap \"{name}\" not found")),
            }
        }
        if let Some(r) = from.get("secretRef") {
            let name = text(&r["name"]);
            match st.get(sk, ns, &name) {
                Some(s) => {
                    for (k, v) in s["data"].as_object().into_iter().flatten() {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(v.as_str().unwrap_or_default())
                            .unwrap_or_default();
                        env.insert(k.clone(), String::from_utf8_lossy(&bytes).into_owned());
                    }
                }
                None if optional(r) => {}
                None => return Err(format!("secret \"{name}\" not found")),
            }
        }
    }
    for e in c["env"].as_array().into_iter().flatten() {
        if let Some(v) = e["value"].as_str() {
            env.insert(text(&e["name"]), v.to_owned());
        }
    }
    Ok(env)
}

fn substitute(line: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = line.to_owned();
    for (k, v) in env {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    out
}

fn condition(kind: &str, reason: &str, message: &str) -> Value {
    json!({"type": kind, "status": "True", "reason": reason, "message": message,
        "lastProbeTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()})
}

/// One pass over every Job. Writes only what changed.
pub fn reconcile(st: &mut State) {
    let (Some(jk), Some(pk)) = (kind_named("Job"), kind_named("Pod")) else {
        return;
    };
    for job in st.list(jk, None) {
        if finished(&job) {
            continue;
        }
        reconcile_job(st, jk, pk, job);
    }
}

fn reconcile_job(st: &mut State, jk: Kind, pk: Kind, job: Value) {
    let ns = text(&job["metadata"]["namespace"]);
    let name = text(&job["metadata"]["name"]);
    let uid = text(&job["metadata"]["uid"]);
    let template = job["spec"]["template"].clone();
    let image = text(&template["spec"]["containers"][0]["image"]);
    // Keyed by uid: a Job deleted and created again under its name starts afresh.
    let jkey = (jk.plural, ns.clone(), uid.clone());
    let started = *st.started.entry(jkey).or_insert_with(Instant::now);
    let pods: Vec<Value> = st
        .list(pk, Some(&ns))
        .into_iter()
        .filter(|p| {
            p["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|r| r.iter().any(|o| o["uid"] == uid.as_str()))
        })
        .collect();

    if let Some(deadline) = job["spec"]["activeDeadlineSeconds"].as_u64()
        && started.elapsed() >= Duration::from_secs(deadline)
    {
        for p in &pods {
            st.remove(pk, &ns, &text(&p["metadata"]["name"]));
        }
        let mut j = job.clone();
        j["status"] = json!({
            "startTime": job["status"]["startTime"].clone(),
            "active": 0, "failed": 1,
            "conditions": [condition("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")],
        });
        st.put(jk, &ns, j);
        return;
    }

    let Some(pod) = pods.first().cloned() else {
        let pod_name = format!("{name}-{}", &uid.replace('-', "")[..5.min(uid.len())]);
        let mut labels = template["metadata"]["labels"].clone();
        if !labels.is_object() {
            labels = json!({});
        }
        for key in ["job-name", "batch.kubernetes.io/job-name"] {
            labels[key] = json!(name);
        }
        for key in ["controller-uid", "batch.kubernetes.io/controller-uid"] {
            labels[key] = json!(uid);
        }
        let mut object = json!({
            "metadata": {
                "name": pod_name, "namespace": ns, "labels": labels,
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                    "uid": uid, "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": template["spec"].clone(),
            "status": {"phase": "Pending", "conditions": [],
                "containerStatuses": [{"name": template["spec"]["containers"][0]["name"],
                    "image": image, "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "ContainerCreating"}}}]},
        });
        crate::defaulting::default_object("Pod", &mut object, None, &mut String::new);
        if crate::admission::admit_pod(st, &ns, &mut object).is_err() {
            return;
        }
        st.put(pk, &ns, object);
        st.started
            .insert((pk.plural, ns.clone(), pod_name), Instant::now());
        let mut j = job.clone();
        j["status"] = json!({"startTime": now_rfc3339(), "active": 1});
        st.put(jk, &ns, j);
        return;
    };

    let pod_name = text(&pod["metadata"]["name"]);
    let age = st
        .started
        .get(&(pk.plural, ns.clone(), pod_name.clone()))
        .map_or(Duration::ZERO, Instant::elapsed);
    if age < st.ready_after || pod["status"]["phase"] != "Pending" {
        return;
    }
    let cname = template["spec"]["containers"][0]["name"].clone();
    let env = match environment(st, &ns, &pod) {
        Ok(env) => env,
        Err(message) => {
            let status = json!({"phase": "Pending", "conditions": [],
                "containerStatuses": [{"name": cname, "image": image, "imageID": "",
                    "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "CreateContainerConfigError", "message": message}}}]});
            if pod["status"] != status {
                let mut p = pod.clone();
                p["status"] = status;
                st.put(pk, &ns, p);
            }
            return;
        }
    };
    let code = match crate::controller::behavior(st, &image) {
        Behavior::Exit(c) => c,
        Behavior::CrashLoopBackOff => 1,
        _ => 0,
    };
    let lines: Vec<String> = st
        .job_output
        .iter()
        .rev()
        .find(|(s, _)| image.contains(s.as_str()))
        .map(|(_, l)| l.iter().map(|l| substitute(l, &env)).collect())
        .unwrap_or_default();
    st.logs
        .entry((ns.clone(), pod_name))
        .or_default()
        .extend(lines);
    let now = now_rfc3339();
    let mut p = pod.clone();
    p["status"] = json!({
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
        "containerStatuses": [{"name": cname, "image": image,
            "imageID": format!("docker-pullable://{image}"), "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code,
                "reason": if code == 0 { "Completed" } else { "Error" },
                "startedAt": now, "finishedAt": now}}}],
    });
    st.put(pk, &ns, p);
    let mut j = job.clone();
    let start = job["status"]["startTime"].clone();
    j["status"] = if code == 0 {
        json!({"startTime": start, "completionTime": now, "active": 0, "succeeded": 1,
            "conditions": [condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods")]})
    } else {
        json!({"startTime": start, "active": 0, "failed": 1,
            "conditions": [condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]})
    };
    st.put(jk, &ns, j);
}
