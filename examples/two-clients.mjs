// Two demo clients in one room: chat through the example origin (ext lane) and hot frames (relay, echo).
// Run against `npm start`:  node examples/two-clients.mjs [ws://127.0.0.1:8787]
// Needs Node 22 (global WebSocket): `npx node examples/two-clients.mjs` uses the project's.
const base = process.argv[2] ?? "ws://127.0.0.1:8787";
const room = `lobby-${Date.now().toString(36)}`;

function open(user) {
  const ws = new WebSocket(`${base}/v1/ws?tenant=demo&room=${room}&ticket=dev:${user}`);
  ws.binaryType = "arraybuffer";
  const inbox = [];
  let wake = () => {};
  ws.onmessage = (ev) => {
    inbox.push(typeof ev.data === "string" ? JSON.parse(ev.data) : new Uint8Array(ev.data));
    wake();
  };
  const next = async (pred) => {
    const deadline = Date.now() + 5000;
    for (;;) {
      const i = inbox.findIndex(pred);
      if (i >= 0) return inbox.splice(i, 1)[0];
      if (Date.now() > deadline) throw new Error(`${user}: timed out`);
      await new Promise((r) => ((wake = r), setTimeout(r, 100)));
    }
  };
  return { ws, next, ready: new Promise((r, j) => ((ws.onopen = r), (ws.onerror = j))) };
}

const isText = (svc, type) => (m) => !(m instanceof Uint8Array) && m.svc === svc && m.type === type;
const alice = open("alice");
const bob = open("bob");
await Promise.all([alice.ready, bob.ready]);
const a = await alice.next(isText("sys", "authed"));
const b = await bob.next(isText("sys", "authed"));
console.log("alice authed", a.data, "\nbob authed", b.data);

// chat goes through the example origin (a signed webhook); the origin broadcasts
// chat:msg to the room and replies chat:delivered to the sender; then sys.ack.
alice.ws.send(JSON.stringify({ v: 1, svc: "chat", type: "send", flags: 4, seq: 1, data: { msg: "hi bob" } }));
console.log("bob got", await bob.next(isText("chat", "msg")));
console.log("alice got", await alice.next(isText("chat", "delivered")));
console.log("alice got", await alice.next(isText("sys", "ack")));

bob.ws.send(new Uint8Array([1, 1, 7, 0, 0xca, 0xfe])); // hot svc 1 (relay), opcode 7
console.log("alice got hot frame", Array.from(await alice.next((m) => m instanceof Uint8Array)));
alice.ws.send(new Uint8Array([1, 2, 3, 1, 9, 0, 0, 0, 0x42])); // hot svc 2 (echo) with seq 9
console.log("alice got echo", Array.from(await alice.next((m) => m instanceof Uint8Array)));

alice.ws.close();
bob.ws.close();
