// The live console (issue 13): a web page served by the engine and the event stream it reads.
// main wires the three routes into the gateway and calls close() before the gateway drains.
//   GET /console              the page (public: it holds no data, it asks for a token)
//   GET /console/{file}       its script and style, and uPlot's (a fixed allow-list)
//   GET /v1/console/stream    Server-Sent Events: `tick` figures and `stock` events (viewer)

import type { FeatureHandler, FeatureRoute } from '../gateway/http-gateway.js';
import { consoleAsset, consolePage } from './console-page.js';
import { ConsoleStream, type ConsoleStreamOptions } from './console-stream.js';

export interface Console {
  routes: Record<Extract<FeatureRoute, `console.${string}`>, FeatureHandler>;
  /** Ends every stream and stops the poller; new streams are refused (503 shutting_down). */
  close(): void;
}

export function startConsole(opts: ConsoleStreamOptions): Console {
  const stream = new ConsoleStream(opts);
  return {
    routes: { 'console.page': consolePage, 'console.asset': consoleAsset, 'console.stream': stream.handler },
    close: () => stream.close(),
  };
}
