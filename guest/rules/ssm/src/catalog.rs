//! The detections as data: what each one is called, how severe it is, how it maps to
//! MITRE ATT&CK and what an analyst should do with it. The logic lives elsewhere
//! (`baseline`, `multiple_sessions`); this file is what a reviewer reads first.

use detect_sdk::catalog::{Detection, Mitre, Severity};

const LATERAL_MOVEMENT: &[Mitre] = &[Mitre {
    tactic_id: "TA0008",
    tactic: "Lateral Movement",
    technique_id: "T1021.008",
    technique: "Remote Services: Direct Cloud VM Connections",
}];

/// The investigative actions of the Cortex XDR alert, shared by its three variants.
const SESSION_RUNBOOK: &str = "\
1. Examine the specifics of the SSM session, including the source IP address, identity, and timestamp.
2. Validate the permissions and roles associated with the user initiating the SSM session to ensure they align with the expected level of access.
3. Follow further actions taken by the identity or on the relevant instance.";

const SESSION_REFERENCE: &str = "https://attack.mitre.org/techniques/T1021/008/";
const SESSION_TAGS: &[&str] = &[
    "AWS CloudTrail",
    "AWS SSM",
    "Cloud Lateral Movement Analytics",
];

/// Every successful SSM session start, until the identity or the session is unusual.
pub const SESSION_STARTED: Detection = Detection {
    id: "AWS.SSM.SessionStarted",
    name: "An identity started an AWS SSM session",
    severity: Severity::Info,
    mitre: LATERAL_MOVEMENT,
    description: "AWS SSM interactive session. An identity started a Session Manager session \
        on a managed instance. Attacker's goals: gaining unauthorized access, executing \
        unauthorized commands, or compromising sensitive information within the target system.",
    runbook: SESSION_RUNBOOK,
    reference: SESSION_REFERENCE,
    tags: SESSION_TAGS,
    dedup_period: "baseline.dedup_period",
};

/// A session start by an identity with no SSM session in the training period.
pub const UNUSUAL_IDENTITY: Detection = Detection {
    id: "AWS.SSM.UnusualIdentity",
    name: "An unusual identity started an AWS SSM session",
    severity: Severity::Low,
    mitre: LATERAL_MOVEMENT,
    description: "AWS SSM interactive session. An identity that has not started an SSM session \
        during the training period started one. Attacker's goals: gaining unauthorized access, \
        executing unauthorized commands, or compromising sensitive information within the \
        target system.",
    runbook: SESSION_RUNBOOK,
    reference: SESSION_REFERENCE,
    tags: SESSION_TAGS,
    dedup_period: "baseline.dedup_period",
};

/// A session by a known identity to a target, from a network or with a document that the
/// identity has not used in the training period.
pub const UNUSUAL_SESSION: Detection = Detection {
    id: "AWS.SSM.UnusualSession",
    name: "An identity started an unusual AWS SSM session",
    severity: Severity::Medium,
    mitre: LATERAL_MOVEMENT,
    description: "AWS SSM interactive session. An identity with SSM history started a session \
        that departs from it: a new target instance, source network or session document. \
        Attacker's goals: gaining unauthorized access, executing unauthorized commands, or \
        compromising sensitive information within the target system.",
    runbook: SESSION_RUNBOOK,
    reference: SESSION_REFERENCE,
    tags: SESSION_TAGS,
    dedup_period: "baseline.dedup_period",
};

/// Panther's `AWS.SSM.MultipleSessions`, as a streaming detection.
pub const MULTIPLE_SESSIONS: Detection = Detection {
    id: "AWS.SSM.MultipleSessions",
    name: "AWS SSM Multiple Sessions",
    severity: Severity::Info,
    mitre: &[Mitre {
        tactic_id: "TA0002",
        tactic: "Execution",
        technique_id: "T1203",
        technique: "Exploitation for Client Execution",
    }],
    description: "Detect when an actor launches multiple distinct SSM sessions within a single hour period.",
    runbook: "Identify the instances for which sessions were started. Monitor instance and \
        session activity. If possible, reach out to the user to determine the reason for \
        multiple sessions.",
    reference: "https://stratus-red-team.cloud/attack-techniques/AWS/aws.execution.ssm-start-session/",
    tags: &[
        "AWS CloudTrail",
        "AWS SSM",
        "Execution: Exploitation for Client Execution",
        "Beta",
    ],
    dedup_period: "multiple_sessions.dedup_period",
};

/// All detections, in the order `describe` lists them.
pub const ALL: [&Detection; 4] = [
    &SESSION_STARTED,
    &UNUSUAL_IDENTITY,
    &UNUSUAL_SESSION,
    &MULTIPLE_SESSIONS,
];

/// Looks a detection up by id.
pub fn by_id(id: &str) -> Option<&'static Detection> {
    detect_sdk::catalog::by_id(&ALL, id)
}
