/**
 * One error class per way an HTTP request can fail, each carrying its HTTP status and the OpenAI error body
 * fields (`type`, `param`, `code`). Library errors (InvalidArgumentError, ContextOverflowError, ...) are
 * mapped here too, so every failure leaves the server as `{ error: { message, type, param, code } }`.
 */
import { ContextOverflowError, InvalidArgumentError, OnepassError } from "../errors.js";

/** The body OpenAI's API (and its clients) use for errors. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export class ServeError extends OnepassError {
  override readonly code: string = "SERVE";
  /** HTTP status. */
  readonly status: number = 500;
  /** OpenAI's error `type`. */
  readonly type: string = "server_error";
  /** OpenAI's error `code` (stable, machine-readable). */
  readonly errorCode: string | null = null;
  /** The request field the error is about (OpenAI's `param`). */
  readonly param: string | null;
  constructor(message: string, param?: string) {
    super(message);
    this.param = param ?? null;
  }
}

/** A request field has the wrong type or value, the JSON is malformed, or a feature is not supported (400). */
export class BadRequestError extends ServeError {
  override readonly code = "BAD_REQUEST";
  override readonly status = 400;
  override readonly type = "invalid_request_error";
  override readonly errorCode: string;
  constructor(message: string, param?: string, errorCode = "invalid_value") {
    super(message, param);
    this.errorCode = errorCode;
  }
}

/** The prompt plus max_tokens does not fit the context window or the server's prompt limit (400). */
export class ContextLengthError extends ServeError {
  override readonly code = "CONTEXT_LENGTH";
  override readonly status = 400;
  override readonly type = "invalid_request_error";
  override readonly errorCode = "context_length_exceeded";
}

/** Missing or wrong bearer key (401). */
export class AuthenticationError extends ServeError {
  override readonly code = "AUTHENTICATION";
  override readonly status = 401;
  override readonly type = "authentication_error";
  override readonly errorCode = "invalid_api_key";
}

/** The `model` asked for is not the one this server serves (404). */
export class ModelNotFoundError extends ServeError {
  override readonly code = "MODEL_NOT_FOUND";
  override readonly status = 404;
  override readonly type = "invalid_request_error";
  override readonly errorCode = "model_not_found";
}

/** No such route (404). */
export class RouteNotFoundError extends ServeError {
  override readonly code = "ROUTE_NOT_FOUND";
  override readonly status = 404;
  override readonly type = "invalid_request_error";
  override readonly errorCode = "not_found";
}

/** A route exists but not with this method (405). */
export class MethodNotAllowedError extends ServeError {
  override readonly code = "METHOD_NOT_ALLOWED";
  override readonly status = 405;
  override readonly type = "invalid_request_error";
  override readonly errorCode = "method_not_allowed";
}

/** The body is larger than the server's limit (413). */
export class PayloadTooLargeError extends ServeError {
  override readonly code = "PAYLOAD_TOO_LARGE";
  override readonly status = 413;
  override readonly type = "invalid_request_error";
  override readonly errorCode = "payload_too_large";
}

/** The body is not JSON (415). */
export class UnsupportedMediaTypeError extends ServeError {
  override readonly code = "UNSUPPORTED_MEDIA_TYPE";
  override readonly status = 415;
  override readonly type = "invalid_request_error";
  override readonly errorCode = "unsupported_media_type";
}

/** The queue in front of the engine is full (429 with Retry-After). */
export class QueueFullError extends ServeError {
  override readonly code = "QUEUE_FULL";
  override readonly status = 429;
  override readonly type = "rate_limit_error";
  override readonly errorCode = "queue_full";
  /** Seconds the client should wait before retrying. */
  constructor(message: string, readonly retryAfterS: number) {
    super(message);
  }
}

/** The request did not finish within the server's per-request timeout (408). */
export class RequestTimeoutError extends ServeError {
  override readonly code = "REQUEST_TIMEOUT";
  override readonly status = 408;
  override readonly type = "timeout_error";
  override readonly errorCode = "request_timeout";
}

/** The server is shutting down and accepts no new work (503). */
export class ShuttingDownError extends ServeError {
  override readonly code = "SHUTTING_DOWN";
  override readonly status = 503;
  override readonly type = "server_error";
  override readonly errorCode = "shutting_down";
}

/** Any library error, as the ServeError the client sees. Unknown errors become a 500 with their message. */
export function toServeError(err: unknown): ServeError {
  if (err instanceof ServeError) return err;
  if (err instanceof ContextOverflowError) return new ContextLengthError(err.message, "max_tokens");
  if (err instanceof InvalidArgumentError) return new BadRequestError(err.message, err.field ?? undefined);
  const fastify = err as { statusCode?: number; code?: string; message?: string };
  if (typeof fastify?.statusCode === "number" && fastify.statusCode >= 400 && fastify.statusCode < 500) {
    const message = String(fastify.message ?? "bad request");
    if (fastify.statusCode === 413) return new PayloadTooLargeError(message);
    if (fastify.statusCode === 415) return new UnsupportedMediaTypeError(message);
    return new BadRequestError(message, undefined, String(fastify.code ?? "invalid_request").toLowerCase());
  }
  const e = new ServeError(err instanceof Error ? err.message : String(err));
  return e;
}

export function errorBody(err: ServeError): OpenAIErrorBody {
  return { error: { message: err.message, type: err.type, param: err.param, code: err.errorCode } };
}
