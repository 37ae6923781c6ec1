/**
 * What the Worker hands a room object with an upgrade it verified (auth,
 * Origin, governance): the identity, in one header only the Worker can set
 * (room objects are not reachable from outside).
 */

/** Header carrying the Worker-verified identity. Only the Worker can reach the object. */
export const CONNECT_HEADER = "x-wsprism-connect";

/** What the Worker hands the room after it verified the upgrade. */
export interface ConnectRequest {
  tenant: string;
  room: string;
  user: string;
  sid: string;
  exp: number | null;
  trace: string;
  /** The client offered the `wsprism.v1` subprotocol: answer with it. */
  protocol: boolean;
}
