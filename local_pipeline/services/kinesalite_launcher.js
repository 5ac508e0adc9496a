// Starts kinesalite bound to one address (its own cli.js listens on every interface,
// and an unauthenticated emulator should not be reachable from the network).
// usage: node kinesalite_launcher.js <node_modules dir> <host> <port> [kinesalite options as JSON]
'use strict'
const path = require('path')
const [modules, host, port, optionsJson] = process.argv.slice(2)
const kinesalite = require(path.join(modules, 'kinesalite'))
const options = optionsJson ? JSON.parse(optionsJson) : {}
const server = kinesalite(options).listen(Number(port), host, () => {
  const address = server.address()
  console.log('kinesalite listening at http://%s:%s', address.address, address.port)
})
// kinesalite rethrows a request's socket error from its handler, so a client that
// vanishes mid-request (a processor killed with kill -9 while its call is on the
// wire: "aborted", ECONNRESET) ended the whole emulator. A real Kinesis outlives its
// clients: log those and keep serving; anything else still ends the process.
process.on('uncaughtException', (err) => {
  if (err && (err.code === 'ECONNRESET' || err.message === 'aborted')) {
    console.log('kinesalite: a client went away mid-request (%s); still serving', err.message)
    return
  }
  console.error(err)
  process.exit(1)
})
const stop = () => server.close(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
