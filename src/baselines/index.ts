export { denseDesign, csrDesign, fitLogReg, fitLogRegPath, predictLogReg, logLoss, type Design, type Csr, type LogRegModel, type LogRegOptions } from "../probe/logreg.js";
export { fitMuli, predictMuli, muliFeatures, logSoftmaxRows, type MuliModel } from "./muli.js";
export { TfidfVectorizer, fitTfidf, predictTfidf, tokenize, ngrams, type TfidfClassifier } from "./tfidf.js";
export { promptScores, labelTokenIds, type PromptingOptions } from "./prompting.js";
export { bestFixedLayer, type BestLayerResult } from "./fixed.js";
