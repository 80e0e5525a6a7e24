//! Synthetic CloudTrail traffic, generated deterministically from a seed: for tests that
//! need more than the fixtures, and for benchmarks that anyone can rerun.
//!
//! The stream mixes the management events of many services with SSM `StartSession`
//! records, in the proportion asked for. The session starts follow habits, as real ones
//! do: each identity works on a few instances, from its own network, with the default
//! document, and now and then does something new (another instance, another network,
//! port forwarding), starts sessions on several instances in a burst, or is denied.
//! Records are 1 to 2 KB, as CloudTrail's are, and a tenth use the `YYYY-MM-DD HH:MM:SS`
//! time format that log platforms write.

use std::io::{self, Write};

use serde_json::{Value, json};

/// The generator's version: a change to what it writes from a spec changes it, so that a
/// corpus kept by an earlier bench is made again.
pub const VERSION: u32 = 1;

/// What to generate.
#[derive(Clone, Debug)]
pub struct CorpusSpec {
    pub seed: u64,
    /// Share of records that are SSM `StartSession`s, from 0 to 1.
    pub ssm_share: f64,
    /// Identities that start sessions.
    pub identities: usize,
    /// Event time of the first record, in milliseconds since the Unix epoch.
    pub start_millis: i64,
    /// Mean event time between records.
    pub step_millis: i64,
}

impl Default for CorpusSpec {
    fn default() -> Self {
        CorpusSpec {
            seed: 1,
            ssm_share: 0.012,
            identities: 200,
            start_millis: 1_735_689_600_000, // 2025-01-01
            step_millis: 20_000,
        }
    }
}

/// When to stop writing.
#[derive(Clone, Copy, Debug)]
pub enum Until {
    Records(u64),
    Bytes(u64),
}

impl Until {
    fn reached(self, tally: &Tally) -> bool {
        match self {
            Until::Records(n) => tally.records >= n,
            Until::Bytes(n) => tally.bytes >= n,
        }
    }
}

/// What was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub records: u64,
    pub bytes: u64,
    /// `StartSession` records.
    pub sessions: u64,
    /// Identities that started sessions.
    pub identities: u64,
}

/// An endless, deterministic stream of records.
pub struct Corpus {
    spec: CorpusSpec,
    rng: fastrand::Rng,
    now: i64,
    habits: Vec<Habit>,
    /// Sessions still to come in a burst: identity, targets left.
    burst: Option<(usize, Vec<String>)>,
    serial: u64,
}

/// One identity's ways.
struct Habit {
    arn: String,
    role: String,
    targets: Vec<String>,
    network: [u8; 3],
}

const SERVICES: &[(&str, &[&str])] = &[
    (
        "ec2.amazonaws.com",
        &[
            "DescribeInstances",
            "DescribeSecurityGroups",
            "RunInstances",
            "DescribeVolumes",
        ],
    ),
    (
        "s3.amazonaws.com",
        &["GetObject", "PutObject", "ListBucket", "GetBucketAcl"],
    ),
    ("sts.amazonaws.com", &["AssumeRole", "GetCallerIdentity"]),
    (
        "iam.amazonaws.com",
        &["ListRoles", "GetRole", "ListPolicies"],
    ),
    ("kms.amazonaws.com", &["Decrypt", "GenerateDataKey"]),
    (
        "monitoring.amazonaws.com",
        &["PutMetricData", "GetMetricData"],
    ),
    ("lambda.amazonaws.com", &["Invoke", "ListFunctions"]),
    (
        "ssm.amazonaws.com",
        &[
            "GetParameter",
            "DescribeInstanceInformation",
            "TerminateSession",
            "SendCommand",
        ],
    ),
    (
        "logs.amazonaws.com",
        &["CreateLogStream", "DescribeLogGroups"],
    ),
    ("dynamodb.amazonaws.com", &["DescribeTable", "ListTables"]),
];

const ACCOUNT: &str = "111122223333";

impl Corpus {
    pub fn new(spec: CorpusSpec) -> Corpus {
        let mut rng = fastrand::Rng::with_seed(spec.seed);
        let habits = (0..spec.identities.max(1))
            .map(|n| {
                let role = ["Engineer", "Admin", "Oncall", "Deploy"][n % 4].to_owned();
                let targets = (0..rng.usize(1..=3))
                    .map(|_| format!("i-0{:016x}", rng.u64(..) >> 4))
                    .collect();
                Habit {
                    arn: format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/user{n}"),
                    role,
                    targets,
                    network: [10, rng.u8(..), rng.u8(..)],
                }
            })
            .collect();
        let now = spec.start_millis;
        Corpus {
            spec,
            rng,
            now,
            habits,
            burst: None,
            serial: 0,
        }
    }

    /// The next record.
    pub fn next_record(&mut self) -> Value {
        self.serial += 1;
        self.now += self.rng.i64(0..=2 * self.spec.step_millis.max(1));
        if let Some((who, mut targets)) = self.burst.take() {
            let target = targets.pop().expect("bursts are not empty");
            if !targets.is_empty() {
                self.burst = Some((who, targets));
            }
            return self.session(who, target);
        }
        if self.rng.f64() >= self.spec.ssm_share {
            return self.other();
        }
        let who = self.rng.usize(..self.habits.len());
        let habit = &self.habits[who];
        let target = if self.rng.f64() < 0.03 {
            format!("i-0{:016x}", self.rng.u64(..) >> 4)
        } else {
            habit.targets[self.rng.usize(..habit.targets.len())].clone()
        };
        if self.rng.f64() < 0.01 {
            let burst: Vec<String> = (0..self.rng.usize(2..=4))
                .map(|_| format!("i-0{:016x}", self.rng.u64(..) >> 4))
                .collect();
            self.burst = Some((who, burst));
        }
        self.session(who, target)
    }

    /// Writes `count` records as NDJSON.
    pub fn write_ndjson(&mut self, count: usize, out: &mut impl Write) -> io::Result<Tally> {
        self.write(Until::Records(count as u64), out)
    }

    /// Writes records as NDJSON until `until`; says what it wrote.
    pub fn write(&mut self, until: Until, out: &mut impl Write) -> io::Result<Tally> {
        let mut tally = Tally::default();
        let mut identities = std::collections::HashSet::new();
        let mut line = Vec::with_capacity(4096);
        while !until.reached(&tally) {
            let record = self.next_record();
            if record["eventName"] == "StartSession" {
                tally.sessions += 1;
                if let Some(arn) = record["userIdentity"]["arn"].as_str() {
                    identities.insert(arn.to_owned());
                }
            }
            line.clear();
            serde_json::to_writer(&mut line, &record)?;
            line.push(b'\n');
            out.write_all(&line)?;
            tally.bytes += line.len() as u64;
            tally.records += 1;
        }
        tally.identities = identities.len() as u64;
        Ok(tally)
    }

    fn time(&mut self) -> String {
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.now) * 1_000_000)
            .expect("the corpus stays within the calendar");
        let format: &[time::format_description::BorrowedFormatItem] = if self.rng.u8(..10) == 0 {
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]")
        } else {
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")
        };
        at.format(format).expect("the format is valid")
    }

    fn ids(&mut self) -> (String, String) {
        let id = |rng: &mut fastrand::Rng| {
            let (a, b) = (rng.u64(..), rng.u64(..));
            format!(
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xffff,
                b >> 48,
                b & 0xffff_ffff_ffff
            )
        };
        (id(&mut self.rng), id(&mut self.rng))
    }

    fn identity(&self, who: usize) -> Value {
        let habit = &self.habits[who];
        json!({
            "type": "AssumedRole",
            "principalId": format!("AROAEXAMPLE{}:user{who}", habit.role.to_uppercase()),
            "arn": habit.arn,
            "accountId": ACCOUNT,
            "accessKeyId": format!("ASIAEXAMPLE{who:09}"),
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": format!("AROAEXAMPLE{}", habit.role.to_uppercase()),
                    "arn": format!("arn:aws:iam::{ACCOUNT}:role/{}", habit.role),
                    "accountId": ACCOUNT,
                    "userName": habit.role,
                },
                "attributes": {"creationDate": "2025-01-01T00:00:00Z", "mfaAuthenticated": "false"},
            },
        })
    }

    fn session(&mut self, who: usize, target: String) -> Value {
        let network = self.habits[who].network;
        let ip = if self.rng.f64() < 0.01 {
            format!("203.0.{}.{}", self.rng.u8(..), self.rng.u8(1..255))
        } else {
            format!(
                "{}.{}.{}.{}",
                network[0],
                network[1],
                network[2],
                self.rng.u8(1..255)
            )
        };
        let mut parameters = json!({"target": target});
        if self.rng.f64() < 0.01 {
            parameters["documentName"] = "AWS-StartPortForwardingSession".into();
        }
        let (event_id, request_id) = self.ids();
        let mut record = json!({
            "eventVersion": "1.08",
            "userIdentity": self.identity(who),
            "eventTime": self.time(),
            "eventSource": "ssm.amazonaws.com",
            "eventName": "StartSession",
            "awsRegion": "us-east-1",
            "sourceIPAddress": ip,
            "userAgent": "aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64.amzn.2023 prompt/off command/ssm.start-session",
            "requestParameters": parameters,
            "responseElements": {
                "sessionId": format!("user{who}-{:016x}", self.rng.u64(..)),
                "tokenValue": "Value hidden due to security reasons.",
                "streamUrl": format!("wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/user{who}"),
            },
            "requestID": request_id,
            "eventID": event_id,
            "readOnly": false,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": ACCOUNT,
            "eventCategory": "Management",
            "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": "ssm.us-east-1.amazonaws.com"},
        });
        if self.rng.f64() < 0.02 {
            record["errorCode"] = "AccessDenied".into();
            record["errorMessage"] = format!(
                "User: {} is not authorized to perform: ssm:StartSession",
                self.habits[who].arn
            )
            .into();
            record["responseElements"] = Value::Null;
        }
        record
    }

    fn other(&mut self) -> Value {
        let (source, names) = SERVICES[self.rng.usize(..SERVICES.len())];
        let name = names[self.rng.usize(..names.len())];
        let who = self.rng.usize(..self.habits.len());
        let (event_id, request_id) = self.ids();
        let padding: String = (0..self.rng.usize(0..600))
            .map(|_| self.rng.alphanumeric())
            .collect();
        let region = ["us-east-1", "eu-west-1", "ap-southeast-2"][self.rng.usize(..3)];
        json!({
            "eventVersion": "1.08",
            "userIdentity": self.identity(who),
            "eventTime": self.time(),
            "eventSource": source,
            "eventName": name,
            "awsRegion": region,
            "sourceIPAddress": format!("10.{}.{}.{}", self.rng.u8(..), self.rng.u8(..), self.rng.u8(1..255)),
            "userAgent": "aws-sdk-go-v2/1.24.0 os/linux lang/go#1.21.5 md/GOOS#linux md/GOARCH#amd64",
            "requestParameters": {"maxResults": 50, "filter": padding},
            "responseElements": null,
            "requestID": request_id,
            "eventID": event_id,
            "readOnly": true,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": ACCOUNT,
            "eventCategory": "Management",
            "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": source},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream_and_the_share_is_kept() {
        let spec = CorpusSpec {
            ssm_share: 0.3,
            ..CorpusSpec::default()
        };
        let take = |n| {
            let mut c = Corpus::new(spec.clone());
            (0..n).map(|_| c.next_record()).collect::<Vec<_>>()
        };
        let records = take(2000);
        assert_eq!(records, take(2000));
        let starts = records
            .iter()
            .filter(|r| r["eventName"] == "StartSession")
            .count();
        assert!((500..760).contains(&starts), "{starts}");
        let sizes: Vec<usize> = records.iter().map(|r| r.to_string().len()).collect();
        assert!(
            sizes.iter().all(|s| (900..2600).contains(s)),
            "{:?}",
            sizes.iter().max()
        );
    }
}
