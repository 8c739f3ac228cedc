import http2 from "node:http2";
const c = http2.connect(`http://127.0.0.1:${process.argv[2]}`);
c.on("error", (e) => console.log("session error", e));
for (let i = 0; i < 5; i++) {
  await new Promise<void>((resolve) => {
    const r = c.request({ ":path": `/x${i}` });
    let body = ""; r.on("data", (d) => (body += d)); r.on("end", () => { console.log(body.trim()); resolve(); });
    r.on("error", (e) => { console.log("err", e.message); resolve(); });
    r.end();
  });
}
c.close();
