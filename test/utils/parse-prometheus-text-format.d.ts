/**
 * Types of `parse-prometheus-text-format` (a port of Prometheus' own text
 * parser, `expfmt`), which ships none: what test/Metrics.test.ts reads.
 */
declare module "parse-prometheus-text-format" {
  /** One sample of a family (a histogram's or a summary's samples merged by labels). */
  export interface Sample {
    readonly value?: string
    readonly labels?: Readonly<Record<string, string>>
    readonly timestamp_ms?: string
    readonly buckets?: Readonly<Record<string, string>>
    readonly quantiles?: Readonly<Record<string, string>>
    readonly count?: string
    readonly sum?: string
  }

  /** A metric family: its name, `# HELP` text ("" without one), `# TYPE` in capitals ("UNTYPED" without one). */
  export interface Family {
    readonly name: string
    readonly help: string
    readonly type: string
    readonly metrics: ReadonlyArray<Sample>
  }

  /** Parses Prometheus text; throws `InvalidLineError` on a line it cannot read. */
  export default function parsePrometheusTextFormat(text: string): ReadonlyArray<Family>
}
