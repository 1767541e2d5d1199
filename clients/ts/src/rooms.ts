// The rooms a client is in, their positions, and the recovery report of
// each connection (PROTOCOL.md section 8). No I/O: the client sends what
// this returns and dispatches the events it computes.

import { JoinRoom } from './definitions.js';
import type { RecoveredData, RoomJoinedData, RoomMessageData } from './definitions.js';

interface RoomPosition {
  positions: boolean;
  /** A connection already joined it: a later join is a resume. */
  joined?: boolean;
  epoch?: string;
  offset?: number;
}

function decodeBase64(b64: string): Uint8Array {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export class Rooms {
  /** Rooms joined, and for those with positions the latest position seen. */
  private readonly set = new Map<string, RoomPosition>();
  /** Rooms with positions whose reply this connection awaits: true for a resume, false for a first join. */
  private awaiting = new Map<string, boolean>();
  private recoveredNow: Record<string, boolean> = {};
  private reconnectedNow = false;
  private settleRecovered: ((rooms: Record<string, boolean>) => void) | null = null;

  get names(): string[] {
    return [...this.set.keys()];
  }

  has(room: string): boolean {
    return this.set.has(room);
  }

  add(room: string, positions: boolean): void {
    this.set.set(room, { positions });
  }

  delete(room: string): boolean {
    return this.set.delete(room);
  }

  clear(): void {
    this.set.clear();
  }

  position(room: string): { epoch: string; offset: number } | undefined {
    const r = this.set.get(room);
    return r?.epoch !== undefined && r.offset !== undefined ? { epoch: r.epoch, offset: r.offset } : undefined;
  }

  /**
   * The `room.join` for `room`: with positions a resume (`since`) when one
   * is known. `live`: it goes out on an open connection now, so its
   * `room.joined` counts towards that connection's recovery report.
   */
  joinMessage(room: string, live: boolean): string {
    const r = this.set.get(room);
    if (!r?.positions) return JSON.stringify({ type: JoinRoom.name, room });
    if (live) this.awaiting.set(room, r.joined === true);
    if (r.epoch !== undefined && r.offset !== undefined) {
      return JSON.stringify({ type: JoinRoom.name, room, since: { epoch: r.epoch, offset: r.offset } });
    }
    return JSON.stringify({ type: JoinRoom.name, room, recover: true });
  }

  /**
   * A connection is ready: the joins to send, in order, and the promise of
   * its recovery report (already settled when no room has positions).
   */
  connectionReady(reconnected: boolean): { joins: string[]; recovered: Promise<Record<string, boolean>> } {
    this.awaiting = new Map();
    this.recoveredNow = {};
    this.reconnectedNow = reconnected;
    const joins = this.names.map((room) => this.joinMessage(room, true));
    const recovered = new Promise<Record<string, boolean>>((resolve) => {
      this.settleRecovered = resolve;
    });
    if (this.awaiting.size === 0) this.finish();
    return { joins, recovered };
  }

  /** A `room.joined` reply: takes its position; returns the `RoomJoined` event data. */
  joined(m: Record<string, unknown>): RoomJoinedData {
    const room = m.room as string;
    const r = this.set.get(room);
    const recovered = typeof m.recovered === 'boolean' ? m.recovered : null;
    if (r) {
      r.joined = true;
      if (typeof m.epoch === 'string' && typeof m.offset === 'number') {
        // A recovered resume replays from our offset (the replay advances
        // it); otherwise the live stream starts after `offset`.
        if (recovered !== true) r.offset = m.offset;
        r.epoch = m.epoch;
      } else {
        // The room keeps no history: nothing can be resumed.
        r.epoch = undefined;
        r.offset = undefined;
      }
    }
    const data: RoomJoinedData = { room, recovered };
    if (typeof m.epoch === 'string') data.epoch = m.epoch;
    if (typeof m.offset === 'number') data.offset = m.offset;
    if (typeof m.missed === 'number') data.missed = m.missed;
    return data;
  }

  /**
   * Counts a room's answer towards the connection's report (after its
   * `RoomJoined` went out, whose handlers may have closed the connection);
   * returns the `Recovered` event data once every awaited room answered.
   */
  answered(data: RoomJoinedData): RecoveredData | null {
    const resumed = this.awaiting.get(data.room);
    if (resumed === undefined) return null;
    this.awaiting.delete(data.room);
    // A first join has nothing to lose; a rejoin reports what it got (a
    // room without history cannot be recovered).
    this.recoveredNow[data.room] = resumed ? data.recovered === true : true;
    return this.awaiting.size === 0 ? this.finish() : null;
  }

  /** A `room.message`: advances the room's offset; null for a publication already seen. */
  message(m: Record<string, unknown>): RoomMessageData | null {
    const room = m.room as string;
    const offset = m.offset as number;
    const r = this.set.get(room);
    if (r && r.offset !== undefined && offset <= r.offset) return null;
    if (r) r.offset = offset;
    const data: RoomMessageData = { room, offset };
    if (typeof m.binary === 'string') data.binary = decodeBase64(m.binary);
    else data.data = m.data;
    return data;
  }

  /** The connection closed: rooms that had not answered count as not recovered. */
  connectionClosed(): void {
    if (!this.settleRecovered) return;
    const settle = this.settleRecovered;
    const rooms = this.recoveredNow;
    for (const room of this.awaiting.keys()) rooms[room] = false;
    this.settleRecovered = null;
    this.awaiting = new Map();
    this.recoveredNow = {};
    settle(rooms);
  }

  /** Every awaited room answered: settles the report; the `Recovered` data unless no room has positions. */
  private finish(): RecoveredData | null {
    const rooms = this.recoveredNow;
    for (const room of this.awaiting.keys()) rooms[room] = false;
    this.awaiting = new Map();
    this.recoveredNow = {};
    const settle = this.settleRecovered;
    this.settleRecovered = null;
    settle?.(rooms);
    if (Object.keys(rooms).length === 0) return null;
    return { reconnected: this.reconnectedNow, rooms, all: Object.values(rooms).every(Boolean) };
  }
}
