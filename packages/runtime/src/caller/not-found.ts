import { TroupeError } from '../errors';
import type { Plane } from '../plane/plane';
import type { EndpointAddress } from '../wire/subjects';

/** How long the failure path may wait for the registry to say which endpoints exist, ms. */
const LOOKUP_MS = 1_000;

/**
 * Turns a `NO_INSTANCES` into `NOT_FOUND` when the component is running but
 * has no endpoint of that name (a typo, or a client of another version):
 * asks discovery once which endpoints the component's live instances serve.
 * Runs only after a call found nobody — never per call — and not for an
 * endpoint this process has seen served (an outage answers at once); the
 * first lookup of a component opens a listing watch of it that answers the
 * next failures at once (closed 30 s after the last). Without discovery,
 * or when the registry is slow or the component has no live instance at all,
 * the original error stands (that is an outage, and retryable).
 *
 * A spawn writes its endpoints' records together, so a caller racing a
 * spawn by microseconds could see some of them and not the others; the
 * window is the time of one registry write.
 */
export async function explainNoInstances(plane: Plane, address: EndpointAddress, err: TroupeError): Promise<TroupeError> {
  const discovery = plane.discovery;
  // An endpoint this process has seen served exists: the common outage case answers at once.
  if (!discovery || err.code !== 'NO_INSTANCES' || discovery.everListed(address)) return err;
  const endpoints = await discovery.endpointsOf(address.namespace, address.component, LOOKUP_MS);
  if (!endpoints || endpoints.length === 0 || endpoints.includes(address.endpoint)) return err;
  return new TroupeError(
    'NOT_FOUND',
    `component ${address.namespace}.${address.component} has no endpoint "${address.endpoint}"; its running instances serve: ${endpoints.join(', ')}`,
    { data: { endpoint: address.endpoint, endpoints }, cause: err },
  );
}
