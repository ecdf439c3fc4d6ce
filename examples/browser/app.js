// The example's logic: every call goes through @refreshd/client. Served next to the package's build by the tests;
// in an app, `import { createClient } from "@refreshd/client"`.
import { createClient } from "/clients/js/dist/index.js";

const api = new URLSearchParams(location.search).get("api") ?? "http://127.0.0.1:8000";
const client = createClient({ baseUrl: api, mode: "cookie" });
const $ = (id) => document.getElementById(id);

function log(line) {
  $("log").textContent += `${new Date().toLocaleTimeString()}  ${line}\n`;
}

async function show() {
  const signedIn = (await client.getAccessToken()) !== null;
  $("login-form").hidden = signedIn;
  $("account").hidden = !signedIn;
  if (!signedIn) return;
  const me = await client.me();
  $("who").textContent = `Signed in as ${me.username} (${me.email})`;
  const rows = (await client.sessions.list()).map((session) => {
    const row = document.createElement("tr");
    row.className = session.current ? "current" : "";
    for (const text of [session.deviceName, session.ip ?? "", new Date(session.lastActiveAt).toLocaleString()]) {
      row.insertCell().textContent = text;
    }
    const end = document.createElement("button");
    end.className = "quiet";
    end.textContent = "End";
    end.onclick = async () => {
      await client.sessions.revoke(session.id);
      await show();
    };
    row.insertCell().append(end);
    return row;
  });
  $("sessions").replaceChildren(...rows);
}

client.onAuthChange((event) => {
  log(`${event.type}${event.reason ? ` ${event.reason}` : ""}`);
  void show();
});

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("error").textContent = "";
  try {
    await client.login($("identifier").value, $("password").value);
  } catch (error) {
    $("error").textContent = error.message; // refreshd's own words: "Invalid identifier or password", ...
  }
});
$("logout").addEventListener("click", () => client.logout());

await client.ready;
await show();
