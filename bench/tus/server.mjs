// The tus reference server, as its users run it: @tus/server with
// @tus/file-store, on loopback, storing into DIR. Prints its port.
// It acknowledges each PATCH once the bytes are written to its file,
// without fsync: durability is left to the page cache.
// Usage: node server.mjs DIR
import http from 'node:http';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

const tus = new Server({ path: '/files', datastore: new FileStore({ directory: process.argv[2] }) });
const server = http.createServer((req, res) => tus.handle(req, res));
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
