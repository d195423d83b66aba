/**
 * OTLP/HTTP protobuf bodies for traces, written by the official generated code: the
 * protobufjs static module of opentelemetry-proto that npm `@opentelemetry/otlp-transformer`
 * ships (build/src/generated/root.js, field numbers from opentelemetry/proto/*.proto).
 *
 * That module holds the logs and metrics messages too (~0.8 MB of JavaScript, ~50-100 ms and
 * ~20 MB RSS to load, measured), so it is loaded on first use: runs without an OTLP endpoint
 * do not pay for it, and those with one pay at the first send, not at start-up.
 */

import { KupodError } from "../base/errors.ts";
import { VERSION } from "../base/version.ts";
import type { KeyValue, SpanData } from "./otlp_spans.ts";

/** protobufjs's LongBits form of a 64-bit integer (how fixed64 fields take exact values). */
interface LongBits {
  low: number;
  high: number;
}

interface OtlpSpan extends Omit<SpanData, "service" | "startTimeUnixNano" | "endTimeUnixNano"> {
  startTimeUnixNano: LongBits;
  endTimeUnixNano: LongBits;
}

/** `ExportTraceServiceRequest`, as far as kupod fills it. */
export interface ExportTraceServiceRequest {
  resourceSpans: {
    resource: { attributes: KeyValue[] };
    scopeSpans: { scope: { name: string; version: string }; spans: OtlpSpan[] }[];
  }[];
}

/** What an `ExportTraceServiceResponse` says about spans the receiver did not take. */
export interface PartialSuccess {
  rejectedSpans: number;
  errorMessage: string;
}

/** The part of the generated module kupod uses (its .d.ts types the module as a bare Root). */
interface MessageType<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(bytes: Uint8Array): T;
}

interface GeneratedRoot {
  opentelemetry: {
    proto: {
      collector: {
        trace: {
          v1: {
            ExportTraceServiceRequest: MessageType<ExportTraceServiceRequest>;
            ExportTraceServiceResponse: MessageType<{
              partialSuccess?: { rejectedSpans?: unknown; errorMessage?: string } | null;
            }>;
          };
        };
      };
    };
  };
}

type TraceService = GeneratedRoot["opentelemetry"]["proto"]["collector"]["trace"]["v1"];

let loading: Promise<TraceService> | undefined;

async function traceService(): Promise<TraceService> {
  const mod = await import("@opentelemetry/otlp-transformer/build/src/generated/root.js");
  const root = mod.default as unknown as GeneratedRoot;
  const service = root?.opentelemetry?.proto?.collector?.trace?.v1;
  if (!service?.ExportTraceServiceRequest) {
    throw new KupodError("the OTLP protobuf definitions in @opentelemetry/otlp-transformer moved");
  }
  return service;
}

/** Encodes and decodes OTLP trace export messages. */
export interface TraceCodec {
  encodeRequest(spans: SpanData[]): Uint8Array;
  /** undefined when the receiver took every span */
  decodeResponse(body: Uint8Array): PartialSuccess | undefined;
}

/** The codec, once the generated module has loaded (loaded once per process). */
export async function traceCodec(): Promise<TraceCodec> {
  loading ??= traceService();
  let service: TraceService;
  try {
    service = await loading;
  } catch (e) {
    loading = undefined;
    if (e instanceof KupodError) throw e;
    throw new KupodError(`cannot load the OTLP protobuf definitions: ${oneLine(e)}`, { cause: e });
  }
  return {
    encodeRequest: (spans) =>
      service.ExportTraceServiceRequest.encode(exportRequest(spans)).finish(),
    decodeResponse(body) {
      if (!body.length) return undefined;
      const partial = service.ExportTraceServiceResponse.decode(body).partialSuccess;
      const rejectedSpans = Number(partial?.rejectedSpans ?? 0);
      const errorMessage = partial?.errorMessage ?? "";
      return rejectedSpans || errorMessage ? { rejectedSpans, errorMessage } : undefined;
    },
  };
}

/** One ResourceSpans per service (resource `service.name`), one ScopeSpans (kupod) in each. */
export function exportRequest(spans: SpanData[]): ExportTraceServiceRequest {
  const byService = new Map<string, OtlpSpan[]>();
  for (const { service, startTimeUnixNano, endTimeUnixNano, ...span } of spans) {
    let list = byService.get(service);
    if (!list) byService.set(service, list = []);
    list.push({
      ...span,
      startTimeUnixNano: longBits(startTimeUnixNano),
      endTimeUnixNano: longBits(endTimeUnixNano),
    });
  }
  return {
    resourceSpans: [...byService].map(([service, list]) => ({
      resource: { attributes: [{ key: "service.name", value: { stringValue: service } }] },
      scopeSpans: [{ scope: { name: "kupod", version: VERSION }, spans: list }],
    })),
  };
}

function longBits(n: bigint): LongBits {
  const u = BigInt.asUintN(64, n);
  return { low: Number(u & 0xffff_ffffn), high: Number(u >> 32n) };
}

function oneLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, " ");
}
