// Starts kinesalite bound to loopback only (its own launcher binds every
// interface). Usage: node .ci/kinesalite.js PORT   (NODE_PATH must reach it)
const kinesalite = require('kinesalite');
const port = Number(process.argv[2] || 4567);
const server = kinesalite({ createStreamMs: 10, deleteStreamMs: 10, updateStreamMs: 10, shardLimit: 10000 });
server.listen(port, '127.0.0.1', (err) => {
  if (err) throw err;
  console.log(`kinesalite listening on http://127.0.0.1:${port}`);
});
