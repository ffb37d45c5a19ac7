// undici's Agent on its own: the package index also loads fetch, WebSocket, caches and mocks, which cost a
// gateway process about 13 MB of resident memory that it never uses. The module's export is the same class.
declare module 'undici/lib/dispatcher/agent.js' {
  import type { Agent } from 'undici';
  const AgentClass: typeof Agent;
  export default AgentClass;
}
