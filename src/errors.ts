/**
 * Every failure onepass reports is an OnepassError subclass with a stable `code`, and, where it is about an
 * input, the file and the field/offset that was wrong. The CLI prints `message` without a stack trace.
 */
export interface ErrorWhere {
  /** The file (or URL, or dataset) the problem is in. */
  file?: string;
  /** The metadata key, JSON field, tensor name or column the problem is about. */
  field?: string;
  /** Byte offset in `file`, where known. */
  offset?: number;
}

export class OnepassError extends Error {
  readonly code: string = "ONEPASS_ERROR";
  readonly file?: string;
  readonly field?: string;
  readonly offset?: number;
  constructor(message: string, where: ErrorWhere = {}, options?: { cause?: unknown }) {
    const parts: string[] = [];
    if (where.file !== undefined) parts.push(where.file);
    if (where.field !== undefined) parts.push(`field ${where.field}`);
    if (where.offset !== undefined) parts.push(`offset ${where.offset}`);
    super(parts.length > 0 ? `${parts.join(", ")}: ${message}` : message, options);
    this.name = new.target.name;
    this.file = where.file;
    this.field = where.field;
    this.offset = where.offset;
  }
}

/** A model file is malformed: bad magic, truncated, inconsistent tensor table, bad metadata value. */
export class ModelFormatError extends OnepassError { override readonly code = "MODEL_FORMAT"; }
/** A well-formed model uses something onepass does not implement (architecture, tensor type, rope scaling). */
export class UnsupportedModelError extends OnepassError { override readonly code = "MODEL_UNSUPPORTED"; }
/** Tokenizer data is malformed or unsupported. */
export class TokenizerError extends OnepassError { override readonly code = "TOKENIZER"; }
/** A chat template fails to parse or render. */
export class ChatTemplateError extends OnepassError { override readonly code = "CHAT_TEMPLATE"; }
/** The prompt (plus requested tokens) does not fit the context window. */
export class ContextOverflowError extends OnepassError { override readonly code = "CONTEXT_OVERFLOW"; }
/** ONNX graph building or ONNX Runtime session failures. */
export class GraphError extends OnepassError { override readonly code = "GRAPH"; }
/** Bad arguments to a library call or a CLI command. */
export class InvalidArgumentError extends OnepassError { override readonly code = "INVALID_ARGUMENT"; }
/** A dataset file cannot be read or a row lacks the text/label field. */
export class DatasetError extends OnepassError { override readonly code = "DATASET"; }
/** A feature cache is corrupt, incomplete or from another model. */
export class FeatureCacheError extends OnepassError { override readonly code = "FEATURE_CACHE"; }
/** A probe artifact is malformed or does not belong to the model it is used with. */
export class ProbeError extends OnepassError { override readonly code = "PROBE"; }
/** A probe was trained on another model (fingerprint mismatch). */
export class ModelMismatchError extends OnepassError { override readonly code = "MODEL_MISMATCH"; }
/** The file system refused a read or write (permission, read-only, full disk, not a folder, special file). */
export class FileSystemError extends OnepassError { override readonly code = "FILE_SYSTEM"; }
/** A value that must be finite (logits, features, a loss, weights) is NaN or infinite. */
export class NonFiniteError extends OnepassError { override readonly code = "NON_FINITE"; }
