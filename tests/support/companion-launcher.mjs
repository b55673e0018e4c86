// Starts Uppy Companion's standalone server on 127.0.0.1 only (its stock start script listens
// on every interface), on the given port or, with 0, one the OS picks. Configured by the usual
// COMPANION_* environment variables, plus the one option they cannot express: the AWS SDK must
// not sign a checksum of an empty body into every part URL, or S3 servers that check it
// (SeaweedFS) reject every part.
//
// Usage: node companion-launcher.mjs <path to @uppy/companion> <port>
// Prints `companion listening on http://127.0.0.1:PORT` once it accepts requests.
import http from 'node:http'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const [companionDir, port] = process.argv.slice(2)
if (!companionDir || port === undefined) {
  console.error('usage: node companion-launcher.mjs <path to @uppy/companion> <port>')
  process.exit(64)
}
const load = (relative) => import(pathToFileURL(path.join(companionDir, relative)).href)

// Bind first, so COMPANION_DOMAIN can name the real port before Companion reads its config.
const server = http.createServer()
await new Promise((resolve, reject) => {
  server.once('error', reject)
  server.listen(Number(port), '127.0.0.1', resolve)
})
const bound = server.address().port
process.env.COMPANION_DOMAIN = `127.0.0.1:${bound}`

const { default: standalone } = await load('lib/standalone/index.js')
const companion = await load('lib/companion.js')
const { app } = standalone({
  s3: { awsClientOptions: { requestChecksumCalculation: 'WHEN_REQUIRED' } },
})
server.on('request', app)
companion.socket(server)
console.log(`companion listening on http://127.0.0.1:${bound}`)
