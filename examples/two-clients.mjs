// Two demo clients in one room: chat through the example origin (ext lane) and hot frames (relay, echo,
// coalesced relay).
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

// svc 4 is a relay with coalesce: true. The first frame of a burst goes out at once,
// as a plain relay frame; those that arrive while the room is busy with it reach
// alice packed in batch frames: [1][0][1][0][count:u16] then count × [len:u16][frame].
for (let i = 0; i < 20; i++) bob.ws.send(new Uint8Array([1, 4, 1, 0, i]));
let got = 0;
while (got < 20) {
  const m = await alice.next((x) => x instanceof Uint8Array);
  const inner = m[1] === 0 ? m[4] | (m[5] << 8) : 1;
  got += inner;
  console.log(m[1] === 0 ? `alice got a batch of ${inner} trail frames` : `alice got a single trail frame`, `(${got}/20)`);
}

alice.ws.close();
bob.ws.close();
