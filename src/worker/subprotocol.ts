/** The WebSocket subprotocol of the contract (SPEC section 2), and the ticket's prefix in it. */
export const SUBPROTOCOL = "wsprism.v1";
export const TICKET_PROTOCOL_PREFIX = "ticket.";
