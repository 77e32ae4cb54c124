/**
 * The web page as a fastify plugin: three files from `gateway/public/`, read once at start and
 * served with `cache-control: no-cache`, so a browser revalidates after a deploy.
 */

import { readFileSync } from 'node:fs'
import type { FastifyPluginAsync } from 'fastify'

const PUBLIC_DIR = new URL('./public/', import.meta.url)
const PAGE_FILES: Readonly<Record<string, string>> = {
  '/': 'index.html',
  '/app.js': 'app.js',
  '/style.css': 'style.css',
}
const CONTENT_TYPES: Readonly<Record<string, string>> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
}

export const page: FastifyPluginAsync = async (app) => {
  for (const [path, file] of Object.entries(PAGE_FILES)) {
    const bytes = readFileSync(new URL(file, PUBLIC_DIR))
    const type = CONTENT_TYPES[path === '/' ? 'html' : (path.split('.').pop() as string)] as string
    app.get(path, async (_request, reply) => reply.type(type).header('cache-control', 'no-cache').send(bytes))
  }
}
