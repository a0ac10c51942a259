// Prints the routes openapi-2-kong makes of a spec: one JSON line per route.
const fs = require('fs');
const { generateFromString } = require('openapi-2-kong');
(async () => {
  const text = fs.readFileSync(process.argv[2], 'utf8');
  const r = await generateFromString(text, 'kong-declarative-config');
  const out = [];
  for (const doc of r.documents) for (const s of doc.services || []) {
    const svcPlugins = (s.plugins || []).map(p => p.name);
    for (const rt of s.routes || []) {
      const auth = (rt.plugins || []).concat(s.plugins || []).filter(p => ['key-auth','jwt','basic-auth','openid-connect','oauth2'].includes(p.name))
        .map(p => ({ name: p.name, key_names: p.config && p.config.key_names }));
      out.push({ methods: rt.methods, paths: rt.paths, strip_path: rt.strip_path, regex_priority: rt.regex_priority, auth });
    }
    console.error(JSON.stringify({ service: { host: s.host, path: s.path, url: s.url }, servicePlugins: svcPlugins }));
  }
  for (const o of out) console.log(JSON.stringify(o));
  for (const w of r.warnings || []) console.error('warning: ' + JSON.stringify(w));
})().catch(e => { console.error('error: ' + e.message); process.exit(1); });
