"""Prompts of the reference's general video benchmarks and of its relevance rating, as data.

Each string is byte-exact to the file named beside it (marinero4972/Open-o3-Video), except
VIDEOMMMU_THINK: the reference's eval/dataloader/videommmu.py is not published in the
copies we could read, so its think prompt is VideoMME's with the letter sentence that
eval/test/test_videommmu.py replaces for open-ended questions (that sentence and its
replacement are byte-exact to test_videommmu.py).

The answer prompts have no system turn: the reference sends a user turn only, so the
model's chat template adds its default system prompt, if any
(`processing.chat.default_system_prompt`).
"""

# eval/dataloader/videomme.py, videomme_doc_to_text
VIDEOMME_PLAIN = (
  "Select the best answer to the multiple-choice question based on the video. Respond with "
  "only the letter (A, B, C, or D) of the correct option."
)
VIDEOMME_THINK = (
  "Select the best answer to the multiple-choice question based on the video. You must first "
  "think about the reasoning process in the mind and then provide the user with the answer. The "
  "reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
  "tags, respectively. All reasoning must be grounded in visual evidence from the video. When "
  "you mention any related object, person, or specific visual element, you must strictly follow "
  "the following format: `<obj>object_name</obj><box>bounding_box</box>at<t>time_in_seconds</t>s`"
  ". The reasoning process MUST NOT be longer than 100 words. In the answer part, respond with "
  "only the letter (A, B, C, or D) of the correct option."
)

# eval/dataloader/worldsense.py: SYS, FRAMES_TMPL_NOSUB, REQUIREMENTS, REQUIREMENTS_THK (their
# backslash line continuations joined; "words.In" has no space in the source either)
WORLDSENSE_SYS = (
  "Carefully watch this video and pay attention to every detail. Based on your observations, "
  "select the best option that accurately addresses the question."
)
WORLDSENSE_NO_SUBTITLES = (
  "\nThese are the frames of a video. Audio transcripts of the video:\nThis video does not "
  "have audio transcripts. "
)
WORLDSENSE_PLAIN = (
  "\nSelect the best answer to the multiple-choice question based on the video. Respond with "
  "only the letter (A, B, C, or D) of the correct option. "
)
WORLDSENSE_THINK = (
  "\nSelect the best answer to the multiple-choice question based on the video. You must first "
  "think about the reasoning process in the mind and then provide the user with the answer. The "
  "reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
  "tags, respectively. All reasoning must be grounded in visual evidence from the video. When "
  "you mention any related object, person, or specific visual element, you must strictly follow "
  "the following format: `<obj>object_name</obj><box>bounding_box</box>at<t>time_in_seconds</t>s`"
  ". The reasoning process MUST NOT be longer than 100 words.In the answer part, respond with "
  "only the letter (A, B, C, or D) of the correct option. "
)

# eval/test/test_videommmu.py: the sentence an open-ended question's prompt replaces
VIDEOMMMU_MCQ_SENTENCE = "In the answer part, respond with only the letter of the correct option."
VIDEOMMMU_OPEN_SENTENCE = "In the answer part, respond with only the final answer."
# reconstructed (see the module doc)
VIDEOMMMU_THINK = VIDEOMME_THINK.replace(
  "In the answer part, respond with only the letter (A, B, C, or D) of the correct option.",
  VIDEOMMMU_MCQ_SENTENCE,
)
VIDEOMMMU_PLAIN = VIDEOMME_PLAIN.replace(" (A, B, C, or D)", "")

# eval/tts.py, build_image_scorer_msgs
RATING_SYSTEM = "You are a helpful assistant. Only reply with a single digit: 0, 1, or 2."
RATING_USER = (
  "You will be given a video question and a set of cropped images extracted from the video.\n"
  "Score how related these images are to answering the question.\n\n"
  "Scoring rules:\n"
  "2 = clearly relevant to answering the question\n"
  "1 = might be useful but uncertain\n"
  "0 = not relevant at all\n\n"
  "Only output one of: 0, 1, or 2. No other text.\n"
  "Question: {question}"
)
