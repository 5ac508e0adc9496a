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
const stop = () => server.close(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
