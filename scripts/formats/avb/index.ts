/**
 * Android Verified Boot (AVB 1.3, avbtool-compatible): parse, build, sign and verify vbmeta
 * images and AVB footers. See each module for details; this file is the public surface.
 */
export { AVB_ALGORITHMS, type AvbAlgorithm, type AvbAlgorithmName, algorithmByName } from './algorithms.ts';
export type { AvbArea, ContentCheck, ContentProblem, ContentResult, TrustedHashtree } from './contents.ts';
export { type FecMismatch, verifyFec } from './fec.ts';
export { type AvbFooter, encodeFooter, FOOTER_SIZE, parseFooter, readFooter } from './footer.ts';
export {
  calcHashLevelOffsets,
  generateHashtree,
  type Hashtree,
  type HashtreeOptions,
  hashUpperLevels,
} from './hashtree.ts';
export { type AvbImage, readAvbImage } from './image.ts';
export {
  type AvbSlotVerifyResult,
  type ImageSetProblem,
  type ImageSetVerification,
  resultShouldContinue,
  slotVerifyResult,
  type VerifyImageSetOptions,
  verifyImageSet,
} from './image-set.ts';
export {
  avbPublicKeyFromBytes,
  avbPublicKeySha1,
  avbPublicKeySha256,
  decodeAvbPublicKey,
  encodeAvbPublicKey,
  generateAvbKey,
  isPublicTestKey,
  PUBLIC_TEST_KEY_SHA256,
  publicTestKeyName,
  readAvbPublicKey,
} from './keys.ts';
export {
  AVB_ROLLBACK_LOCATIONS,
  type AvbProblem,
  calculateVbmetaDigest,
  type DescriptorVerification,
  type PartitionsVerification,
  type VbmetaCheck,
  type VerifyPartitionsOptions,
  verifyPartitions,
} from './partitions.ts';
export {
  type AddHashFooterOptions,
  type AddHashtreeFooterOptions,
  addHashFooter,
  addHashtreeFooter,
  type ChainPartition,
  type FooterResult,
  generateVbmetaBlob,
  type MakeVbmetaOptions,
  makeVbmetaImage,
  type VbmetaOptions,
} from './sign.ts';
export * from './vbmeta.ts';
export {
  type AvbInfo,
  avbInfoToJson,
  type ExpectedChainPartition,
  formatAvbInfo,
  infoImage,
  type VbmetaVerification,
  type VerifiedDescriptor,
  type VerifyImageOptions,
  type VerifyImageResult,
  verifyImage,
  verifyVbmeta,
} from './verify.ts';
