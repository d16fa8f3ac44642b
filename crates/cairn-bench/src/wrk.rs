//! The load generator: one wrk Lua script per operation (written to a temp dir), wrk run for
//! a bounded time, and its summary read back as JSON printed by the scripts' `done` hook.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// Load settings shared by every operation.
#[derive(Clone, Debug)]
pub struct Load {
    pub threads: usize,
    pub connections: usize,
    pub secs: u64,
}

/// One operation's outcome as wrk reports it.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub requests: u64,
    pub secs: f64,
    /// Responses with a status of 400 or more (wrk's `errors.status`).
    pub non_2xx: u64,
    /// Connect, read, write and timeout errors.
    pub socket_errors: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Measured {
    pub fn rps(&self) -> f64 {
        if self.secs > 0.0 {
            self.requests as f64 / self.secs
        } else {
            0.0
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "seconds": round(self.secs, 3),
            "rps": round(self.rps(), 1),
            "p50_ms": round(self.p50_ms, 3),
            "p90_ms": round(self.p90_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "non_2xx": self.non_2xx,
            "socket_errors": self.socket_errors,
        })
    }
}

pub fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// Headers for every request, unique-name support per wrk thread, and the `done` hook
/// that prints the summary as one `BENCHJSON {...}` line.
fn prelude(token: &str) -> String {
    format!(
        r#"wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "application/scim+json"
wrk.headers["Accept"] = "application/scim+json"
local threads = 0
setup = function(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
tid = tid or 0
function load_sample(path)
  local t = {{}}
  for line in io.lines(path) do
    local id, idx = line:match("(%S+)%s+(%S+)")
    t[#t + 1] = {{ id = id, idx = idx }}
  end
  return t
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {{"requests":%d,"duration_us":%d,"non2xx":%d,"socket":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50.0), latency:percentile(90.0), latency:percentile(99.0), latency.max))
end
"#
    )
}

/// Writes the Lua scripts of every operation; `sample` holds "id idx" lines of seeded
/// users, `pool` the ids of users that are not in the benchmark groups.
pub struct Scripts {
    dir: PathBuf,
    token: String,
    scim_path: String,
}

impl Scripts {
    pub fn new(dir: &Path, token: &str, scim_path: &str) -> Self {
        Scripts {
            dir: dir.to_owned(),
            token: token.to_owned(),
            scim_path: scim_path.to_owned(),
        }
    }

    pub fn write(&self, name: &str, body: &str) -> Result<PathBuf> {
        let path = self.dir.join(format!("{name}.lua"));
        let text = format!(
            "{}local SCIM = \"{}\"\n{}",
            prelude(&self.token),
            self.scim_path,
            body
        );
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    pub fn write_lines(&self, name: &str, lines: &[String]) -> Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, lines.join("\n") + "\n")?;
        Ok(path)
    }
}

/// Lua for a fixed GET of `path`.
pub fn get_fixed(path: &str) -> String {
    format!(
        "local p = {}\nrequest = function() return wrk.format(\"GET\", p) end\n",
        lua_str(path)
    )
}

/// A fixed GET of a dashboard page as a signed-in browser asks for it: the session cookie
/// instead of the SCIM token.
pub fn get_dashboard(path: &str, cookie: &str) -> String {
    format!(
        "wrk.headers[\"Authorization\"] = nil\nwrk.headers[\"Content-Type\"] = nil\n\
         wrk.headers[\"Accept\"] = \"text/html\"\nwrk.headers[\"Cookie\"] = {}\n{}",
        lua_str(cookie),
        get_fixed(path)
    )
}

/// `GET /Users?filter=userName eq "u{i}@bench.example"`, i random over the seeded users.
pub fn get_filter(n: usize) -> String {
    format!(
        r#"local n = {n}
request = function()
  local i = math.random(0, n - 1)
  return wrk.format("GET", SCIM .. "/Users?filter=userName%20eq%20%22u" .. i .. "%40bench.example%22")
end
"#
    )
}

/// `GET /Users/{{id}}` over the sample.
pub fn get_id(sample: &Path) -> String {
    format!(
        r#"local s = load_sample({})
local k = 0
request = function()
  k = k % #s + 1
  return wrk.format("GET", SCIM .. "/Users/" .. s[k].id)
end
"#,
        lua_str(&sample.display().to_string())
    )
}

/// `POST /Users` with a new userName each time (run id, wrk thread, counter).
pub fn post_user(run: &str) -> String {
    format!(
        r#"local c = 0
request = function()
  c = c + 1
  local name = "p{run}-" .. tid .. "-" .. c .. "@bench.example"
  local body = '{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"' .. name ..
    '","name":{{"givenName":"New","familyName":"User ' .. c .. '"}},"displayName":"New User ' .. c ..
    '","emails":[{{"primary":true,"value":"' .. name .. '","type":"work"}}],"active":true}}'
  return wrk.format("POST", SCIM .. "/Users", nil, body)
end
"#
    )
}

/// Okta's profile update: `PUT /Users/{{id}}` with the whole user, givenName changed.
pub fn put_user(sample: &Path) -> String {
    format!(
        r#"local s = load_sample({})
local k, c = 0, 0
request = function()
  k = k % #s + 1
  c = c + 1
  local u = s[k]
  local name = "u" .. u.idx .. "@bench.example"
  local body = '{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"' .. u.id ..
    '","userName":"' .. name .. '","name":{{"givenName":"Okta' .. c .. '","familyName":"User ' .. u.idx ..
    '"}},"displayName":"Bench User ' .. u.idx .. '","emails":[{{"primary":true,"value":"' .. name ..
    '","type":"work"}}],"active":true}}'
  return wrk.format("PUT", SCIM .. "/Users/" .. u.id, nil, body)
end
"#,
        lua_str(&sample.display().to_string())
    )
}

/// Entra's disable: `PATCH /Users/{{id}}` Replace active "False" (a string, as Entra sends
/// it). Each pass over the sample flips the value, so every request changes the user.
pub fn patch_disable(sample: &Path) -> String {
    format!(
        r#"local s = load_sample({})
local c = 0
request = function()
  local k = c % #s + 1
  local v = (math.floor(c / #s) % 2 == 0) and "False" or "True"
  c = c + 1
  local body = '{{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{{"op":"Replace","path":"active","value":"' .. v .. '"}}]}}'
  return wrk.format("PATCH", SCIM .. "/Users/" .. s[k].id, nil, body)
end
"#,
        lua_str(&sample.display().to_string())
    )
}

/// `PATCH /Groups/{{id}}` adding one member and removing it again in the same request, so
/// the group keeps its size and every request writes a membership (pool: ids of users
/// outside the group, one per line as "id idx").
pub fn group_add_member(group: &str, pool: &Path) -> String {
    format!(
        r#"local s = load_sample({})
local k = 0
request = function()
  k = k % #s + 1
  local m = s[k].id
  local body = '{{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[' ..
    '{{"op":"add","path":"members","value":[{{"value":"' .. m .. '"}}]}},' ..
    '{{"op":"remove","path":"members[value eq \\"' .. m .. '\\"]"}}]}}'
  return wrk.format("PATCH", SCIM .. "/Groups/{group}", nil, body)
end
"#,
        lua_str(&pool.display().to_string())
    )
}

fn lua_str(s: &str) -> String {
    format!("{s:?}")
}

/// Runs wrk with `script` against `base` for the configured time.
pub async fn run(base: &str, script: &Path, load: &Load) -> Result<Measured> {
    let out = Command::new("wrk")
        .arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.secs))
        .args(["--timeout", "10s", "-s"])
        .arg(script)
        .arg(base)
        .output()
        .await
        .context("running wrk (Debian: apt-get install wrk)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("BENCHJSON ")) else {
        bail!(
            "wrk printed no summary (exit {}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let v: Value = serde_json::from_str(line).with_context(|| format!("wrk summary {line}"))?;
    let n = |k: &str| v[k].as_f64().unwrap_or(0.0);
    Ok(Measured {
        requests: n("requests") as u64,
        secs: n("duration_us") / 1e6,
        non_2xx: n("non2xx") as u64,
        socket_errors: n("socket") as u64,
        p50_ms: n("p50_us") / 1e3,
        p90_ms: n("p90_us") / 1e3,
        p99_ms: n("p99_us") / 1e3,
        max_ms: n("max_us") / 1e3,
    })
}
